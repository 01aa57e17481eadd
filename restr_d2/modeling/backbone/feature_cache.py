"""Memo of a frozen encoder's per-sample features (``MODEL.VIT.FEATURE_CACHE_MB``,
``MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB``).

A frozen encoder (``MODEL.VIT.FREEZE``, ``MODEL.RESTR.LANGUAGE.FREEZE``) is a fixed function of
its input, so an image or a sentence it has seen gives the same features again. Training on a
small dataset revisits every image (and its flipped copy) and every sentence each epoch; on
shapes with the DINOv2 ViT-S/14 the ViT was half of each ReSTR step, and the frozen MiniLM then
16 % of what was left (a step 1.18x faster without it). The cache keys each sample by the bytes
of its input rows (plus shape, dtype and autocast state), runs the encoder one sample at a time
on a miss (so a sample's features do not depend on which batch it came in: a resumed run
recomputes the same numbers), and stops adding entries at its byte budget (later misses are
computed every time, and that is logged once).
"""
import hashlib
import logging
from typing import Callable, Dict, Tuple

import torch

__all__ = ["FrozenFeatureCache"]

logger = logging.getLogger(__name__)


class FrozenFeatureCache:
    """``cache(*inputs)``: inputs batched along dim 0, e.g. images (B, 3, H, W), or token ids and
    attention mask (B, T) each -> ``encoder_fn(*inputs)`` (B, ...), memoised per sample (row b
    of every input together).

    Not an ``nn.Module``: it holds no parameters and adds nothing to the state dict. The cached
    tensors carry no autograd history, so only use it for an encoder that does not train.
    """

    def __init__(self, encoder_fn: Callable[..., torch.Tensor], max_bytes: int, name: str = "encoder",
                 config_key: str = "MODEL.VIT.FEATURE_CACHE_MB"):
        """``name`` and ``config_key`` (the setting that sized the cache) are for the log."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.encoder_fn = encoder_fn
        self.max_bytes = int(max_bytes)
        self.name = name
        self.config_key = config_key
        self._store: Dict[Tuple, torch.Tensor] = {}
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._full_logged = False

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()
        self.nbytes = 0

    @staticmethod
    def _key(sample: torch.Tensor) -> Tuple:
        data = sample.detach().contiguous()
        if data.device.type != "cpu":
            data = data.cpu()
        digest = hashlib.blake2b(data.view(torch.uint8).numpy().tobytes(), digest_size=20).digest()
        device_type = sample.device.type
        autocast = torch.is_autocast_enabled(device_type)
        return (
            tuple(sample.shape),
            str(sample.dtype),
            device_type,
            str(torch.get_autocast_dtype(device_type)) if autocast else None,
            digest,
        )

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not inputs:
            raise ValueError("no inputs to encode")
        batch = inputs[0].shape[0]
        if any(x.shape[0] != batch for x in inputs):
            raise ValueError(f"inputs batched along dim 0 must agree in size, got {[tuple(x.shape) for x in inputs]}")
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            # a graph capture (ONNX export, torch.compile) must hold the encoder itself: a lookup
            # would turn the example inputs' features into constants
            with torch.no_grad():
                return self.encoder_fn(*inputs).detach()
        out = []
        for b in range(batch):
            key = tuple(self._key(x[b]) for x in inputs)
            features = self._store.get(key)
            if features is not None:
                self.hits += 1
            else:
                self.misses += 1
                with torch.no_grad():
                    features = self.encoder_fn(*(x[b : b + 1] for x in inputs))[0].detach()
                self._add(key, features)
            out.append(features)
        return torch.stack(out)

    def _add(self, key: Tuple, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if self.nbytes + size > self.max_bytes:
            if not self._full_logged:
                logger.info(
                    f"{self.name} feature cache full at {len(self._store)} samples ({self.nbytes / 2**20:.1f} MiB): "
                    f"later ones are computed each time they come (raise {self.config_key} to keep them)"
                )
                self._full_logged = True
            return
        self._store[key] = features
        self.nbytes += size
