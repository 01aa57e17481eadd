"""Optional speed switches of a built model: ``torch.compile`` and channels-last convolutions.

Both are off by default, explicit in the config and logged when used; neither changes the state
dict (keys, shapes, values), so official checkpoints load with ``strict=True`` either way.

* ``MODEL.COMPILE``: ``ENABLED``, ``MODULES`` (dotted submodule names; empty, the default, means
  the model's image encoder: ``backbone`` in MaskFormer, ``encoder`` in Segmenter, ``encoder_v``
  in ReSTR),
  ``BACKEND`` (``torch.compile`` backend, default ``"inductor"``), ``MODE`` (``"default"``,
  ``"reduce-overhead"``, ``"max-autotune"``...), ``DYNAMIC`` (``None``: PyTorch decides, then
  ``True``/``False``). Each listed submodule is compiled *in place* (``nn.Module.compile``), not
  wrapped, which is why the state-dict keys keep their names (a wrapped model would prefix them
  with ``_orig_mod.``). The first call of each input shape pays the compilation (minutes for a
  Swin-T on CPU); measured gains are in docs/benchmarks.md.
* ``MODEL.CHANNELS_LAST``: ``ENABLED``, ``MODULES`` (as above). The 4-D weights of
  each listed submodule and every 4-D tensor it receives are put in ``torch.channels_last``
  memory format. This is what cuDNN's tensor-core convolutions want (use it with AMP on a GPU);
  on the 2-core CPU measured it made the ResNet-50 models' network 1.1-1.2x faster and did
  nothing for Swin/ViT (docs/benchmarks.md).

``MetaArch(cfg)`` applies them at the end of its constructor, so ``build_model``, ``Trainer``
and ``DefaultPredictor`` all get the same model.
"""
import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from segmentation_core.config_defaults import set_default
from segmentation_core.precision import add_inference_precision_config

__all__ = ["Acceleration", "add_acceleration_config", "capturing_graph"]

logger = logging.getLogger(__name__)


def add_acceleration_config(cfg) -> None:
    """``MODEL.COMPILE.*``, ``MODEL.CHANNELS_LAST.*`` and ``MODEL.INFERENCE_DTYPE*`` (idempotent;
    everything off: float32 inference)."""
    from detectron2.config import CfgNode as CN

    set_default(cfg.MODEL, "COMPILE", CN())
    c = cfg.MODEL.COMPILE
    set_default(c, "ENABLED", False)
    set_default(c, "MODULES", [])
    set_default(c, "BACKEND", "inductor")
    set_default(c, "MODE", "default")
    set_default(c, "DYNAMIC", None)
    set_default(cfg.MODEL, "CHANNELS_LAST", CN())
    set_default(cfg.MODEL.CHANNELS_LAST, "ENABLED", False)
    set_default(cfg.MODEL.CHANNELS_LAST, "MODULES", [])
    # MODEL.INFERENCE_DTYPE / MODEL.INFERENCE_DTYPE_ALLOW_EMULATED (segmentation_core/precision.py)
    add_inference_precision_config(cfg)


def capturing_graph() -> bool:
    """True while ``torch.export`` (ONNX export), ``torch.compile`` or ``torch.jit.trace`` records
    the model: eager-only shortcuts (strided slices whose factors would be baked into the graph,
    ``out=`` buffers) must step aside for the plain ops, so the graph serves every input."""
    return torch.compiler.is_exporting() or torch.compiler.is_compiling() or torch.jit.is_tracing()


def _channels_last_pre_hook(module, args):
    """Forward pre-hook: every 4-D positional tensor argument in channels-last format."""
    return tuple(a.contiguous(memory_format=torch.channels_last)
                 if isinstance(a, torch.Tensor) and a.dim() == 4 else a for a in args)


@dataclass(frozen=True)
class Acceleration:
    """Which submodules to compile / convert to channels-last, and how to compile them.

    A switch whose module tuple is empty applies to the ``image_encoder`` named in ``apply``.
    """

    compile: bool = False
    compile_modules: Tuple[str, ...] = ()
    compile_backend: str = "inductor"
    compile_mode: str = "default"
    compile_dynamic: Optional[bool] = None
    channels_last: bool = False
    channels_last_modules: Tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg) -> "Acceleration":
        c, cl = cfg.MODEL.COMPILE, cfg.MODEL.CHANNELS_LAST
        return cls(
            compile=bool(c.ENABLED),
            compile_modules=tuple(c.MODULES),
            compile_backend=c.BACKEND,
            compile_mode=c.MODE,
            compile_dynamic=c.DYNAMIC,
            channels_last=bool(cl.ENABLED),
            channels_last_modules=tuple(cl.MODULES),
        )

    def apply(self, model: nn.Module, image_encoder: str, image_encoder_entry: str = "forward") -> nn.Module:
        """Convert / compile the chosen submodules of ``model`` in place; returns ``model``.

        ``image_encoder``: the attribute name of the model's image backbone, used for a switch
        whose module list is empty. ``image_encoder_entry``: the method the model calls on it
        (ReSTR calls its ViT's ``forward_features``, not ``forward``): that is what gets compiled.
        """
        def chosen(enabled, names, key):
            if not enabled:
                return []
            # resolve every name first: a typo fails before anything was changed
            return [(n, _submodule(model, n, key)) for n in (names or (image_encoder,))]

        cl = chosen(self.channels_last, self.channels_last_modules, "MODEL.CHANNELS_LAST.MODULES")
        comp = chosen(self.compile, self.compile_modules, "MODEL.COMPILE.MODULES")
        for name, sub in cl:
            sub.to(memory_format=torch.channels_last)
            sub.register_forward_pre_hook(_channels_last_pre_hook)
            logger.info("channels-last memory format: %s.%s (MODEL.CHANNELS_LAST)", type(model).__name__, name)
        options = dict(backend=self.compile_backend, mode=self.compile_mode, dynamic=self.compile_dynamic)
        for name, sub in comp:
            entry = image_encoder_entry if name == image_encoder else "forward"
            if entry == "forward":
                # in place (sets the module's compiled call), so state-dict keys are unchanged
                sub.compile(**options)
            else:
                # an instance attribute shadowing the method: not part of the state dict either
                setattr(sub, entry, torch.compile(getattr(sub, entry), **options))
            logger.info(
                "torch.compile: %s.%s.%s (MODEL.COMPILE: backend %s, mode %s, dynamic %s); each new "
                "input shape compiles on its first call", type(model).__name__, name, entry,
                self.compile_backend, self.compile_mode, self.compile_dynamic)
        return model


def _submodule(model: nn.Module, name: str, key: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in model.named_children())
        raise ValueError(f"{key} names {name!r}, which {type(model).__name__} does not have; its "
                         f"submodules are: {children} (use dotted paths for deeper ones, e.g. "
                         "'sem_seg_head.pixel_decoder')") from None


def channels_last_modules(model: nn.Module) -> Sequence[str]:
    """Names of the submodules that carry the channels-last input hook (for tests and logs)."""
    return [n for n, m in model.named_modules()
            if any(h is _channels_last_pre_hook for h in m._forward_pre_hooks.values())]
