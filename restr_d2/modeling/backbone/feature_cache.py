"""Memo of a frozen encoder's per-image features (``MODEL.VIT.FEATURE_CACHE_MB``).

A frozen ViT (``MODEL.VIT.FREEZE``) is a fixed function of its input, so an image it has seen
gives the same features again. Training on a small dataset revisits every image (and its
flipped copy) every epoch; on shapes with the DINOv2 ViT-S/14 the ViT was half of each ReSTR
step. The cache keys each image by its bytes (plus shape, dtype and autocast state), runs the
encoder one image at a time on a miss (so an image's features do not depend on which batch it
came in: a resumed run recomputes the same numbers), and stops adding entries at its byte
budget (later misses are computed every time, and that is logged once).
"""
import hashlib
import logging
from typing import Callable, Dict, Tuple

import torch

__all__ = ["FrozenFeatureCache"]

logger = logging.getLogger(__name__)


class FrozenFeatureCache:
    """``cache(images)``: (B, 3, H, W) -> ``encoder_fn`` output (B, ...), memoised per image.

    Not an ``nn.Module``: it holds no parameters and adds nothing to the state dict. The cached
    tensors carry no autograd history, so only use it for an encoder that does not train.
    """

    def __init__(self, encoder_fn: Callable[[torch.Tensor], torch.Tensor], max_bytes: int, name: str = "encoder"):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.encoder_fn = encoder_fn
        self.max_bytes = int(max_bytes)
        self.name = name
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
    def _key(image: torch.Tensor) -> Tuple:
        data = image.detach().contiguous()
        if data.device.type != "cpu":
            data = data.cpu()
        digest = hashlib.blake2b(data.view(torch.uint8).numpy().tobytes(), digest_size=20).digest()
        device_type = image.device.type
        autocast = torch.is_autocast_enabled(device_type)
        return (
            tuple(image.shape),
            str(image.dtype),
            device_type,
            str(torch.get_autocast_dtype(device_type)) if autocast else None,
            digest,
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images:
            key = self._key(image)
            features = self._store.get(key)
            if features is not None:
                self.hits += 1
            else:
                self.misses += 1
                with torch.no_grad():
                    features = self.encoder_fn(image[None])[0].detach()
                self._add(key, features)
            out.append(features)
        return torch.stack(out)

    def _add(self, key: Tuple, features: torch.Tensor) -> None:
        size = features.numel() * features.element_size()
        if self.nbytes + size > self.max_bytes:
            if not self._full_logged:
                logger.info(
                    f"{self.name} feature cache full at {len(self._store)} images ({self.nbytes / 2**20:.1f} MiB): "
                    f"later images are computed each time they come (raise MODEL.VIT.FEATURE_CACHE_MB to keep them)"
                )
                self._full_logged = True
            return
        self._store[key] = features
        self.nbytes += size
