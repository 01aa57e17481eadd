"""bfloat16 on CPU: whether this CPU computes it natively, and the inference switch.

* :func:`cpu_bf16_support` answers "does this CPU have native bf16 arithmetic": the x86 features
  ``avx512_bf16`` (AVX-512 BF16 dot products) or ``amx_bf16`` (AMX tiles), read from the Linux
  ``/proc/cpuinfo`` flags, elsewhere from PyTorch's own cpuinfo probe (``torch.cpu``). Without
  them PyTorch still runs bf16 ops, but by converting to float32 and back: on the AMD EPYC (AVX2)
  we develop on, a 512x512 bf16 matmul is ~15x *slower* than float32. Training
  (``SOLVER.AMP.CPU_BF16``, ``segmentation_core.engine.trainer``) and inference both ask here.
* ``MODEL.INFERENCE_DTYPE`` (``"float32"``, the default | ``"bfloat16"``): our meta-architectures
  run their network (backbone + heads) in eval mode under ``torch.autocast(dtype=bfloat16)`` and
  cast its outputs back to float32 before post-processing (:class:`InferencePrecision`).
  On a CPU without native bf16 that is an error naming the missing features, unless
  ``MODEL.INFERENCE_DTYPE_ALLOW_EMULATED True`` (slow; for measuring accuracy on such a CPU),
  which is logged as emulated. Training is unaffected (its precision is ``SOLVER.AMP.*``).
"""
import contextlib
import functools
import logging
import platform
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch

from segmentation_core.config_defaults import set_default

__all__ = [
    "NATIVE_BF16_CPU_FEATURES",
    "INFERENCE_DTYPES",
    "CpuBf16Support",
    "UnsupportedInferenceDtypeError",
    "InferencePrecision",
    "add_inference_precision_config",
    "cpu_bf16_support",
    "outputs_to_float32",
]

logger = logging.getLogger(__name__)

# CPU features with native bf16 arithmetic (the names Linux gives them in /proc/cpuinfo)
NATIVE_BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16")
INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def add_inference_precision_config(cfg) -> None:
    """``MODEL.INFERENCE_DTYPE`` ("float32") and ``MODEL.INFERENCE_DTYPE_ALLOW_EMULATED`` (False)."""
    set_default(cfg.MODEL, "INFERENCE_DTYPE", "float32")
    # True: run bfloat16 inference even where the CPU emulates it (slower than float32); for
    # measuring bf16 accuracy on a CPU without avx512_bf16 / amx_bf16
    set_default(cfg.MODEL, "INFERENCE_DTYPE_ALLOW_EMULATED", False)


@dataclass(frozen=True)
class CpuBf16Support:
    """What :func:`cpu_bf16_support` found: ``features`` are the native bf16 features present
    (empty: bf16 is emulated), ``source`` where they were read."""

    cpu_name: str
    features: Tuple[str, ...]
    source: str
    torch_capability: str

    @property
    def native(self) -> bool:
        return bool(self.features)

    def describe(self) -> str:
        found = ", ".join(self.features) if self.features else (
            "neither " + " nor ".join(NATIVE_BF16_CPU_FEATURES))
        return (f"CPU {self.cpu_name!r}: {found} ({self.source}; PyTorch CPU capability "
                f"{self.torch_capability})")


def _linux_cpuinfo() -> Optional[Tuple[str, set]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; None where unreadable."""
    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        return None


def parse_cpuinfo(text: str) -> Optional[Tuple[str, set]]:
    """(model name, flags) of the first processor of a /proc/cpuinfo text; None without flags."""
    name, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name is None:
            name = value.strip()
        elif key in ("flags", "Features") and flags is None:  # x86 / ARM spelling
            flags = set(value.split())
    if flags is None:
        return None
    return name or platform.processor() or "unknown", flags


@functools.lru_cache(maxsize=None)
def cpu_bf16_support() -> CpuBf16Support:
    """Native bf16 features of this CPU (cached: the CPU does not change in a process)."""
    capability = torch.backends.cpu.get_cpu_capability()
    info = _linux_cpuinfo()
    if info is not None:
        name, flags = info
        features = tuple(f for f in NATIVE_BF16_CPU_FEATURES if f in flags)
        return CpuBf16Support(name, features, "/proc/cpuinfo flags", capability)
    # macOS / Windows: PyTorch's cpuinfo probe (private helpers; absent means unknown = none)
    probes = (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported"))
    features = tuple(name for name, fn in probes if getattr(torch.cpu, fn, lambda: False)())
    return CpuBf16Support(platform.processor() or "unknown", features, "torch.cpu probes", capability)


class UnsupportedInferenceDtypeError(RuntimeError):
    """``MODEL.INFERENCE_DTYPE`` asks for a dtype the device does not compute natively."""


def outputs_to_float32(outputs):
    """``outputs`` (tensors in dicts / lists / tuples) with every floating tensor as float32."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: outputs_to_float32(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(outputs_to_float32(v) for v in outputs)
    return outputs


class InferencePrecision:
    """The dtype a meta-architecture's network runs in at inference (eval mode).

    ``float32``: nothing changes (no autocast context, no casts). ``bfloat16``: the network
    runs under ``torch.autocast(device, dtype=torch.bfloat16)`` and its outputs are cast to
    float32 (``outputs_to_float32``) so post-processing is float32 as before. Checked and logged
    once per device type on first use (and at ``from_config`` for ``MODEL.DEVICE``).
    """

    def __init__(self, dtype: str = "float32", allow_emulated: bool = False):
        if dtype not in INFERENCE_DTYPES:
            raise ValueError(f"MODEL.INFERENCE_DTYPE must be one of {sorted(INFERENCE_DTYPES)}; got {dtype!r}")
        self.dtype_name = dtype
        self.dtype = INFERENCE_DTYPES[dtype]
        self.allow_emulated = bool(allow_emulated)
        self._checked: Dict[str, str] = {}  # device type -> "native" | "emulated"

    @classmethod
    def from_config(cls, cfg) -> "InferencePrecision":
        precision = cls(cfg.MODEL.INFERENCE_DTYPE, cfg.MODEL.INFERENCE_DTYPE_ALLOW_EMULATED)
        if precision.reduced:
            precision.check(torch.device(cfg.MODEL.DEVICE).type)  # fail when the model is built
        return precision

    @property
    def reduced(self) -> bool:
        """True when the network runs in a dtype other than float32."""
        return self.dtype != torch.float32

    def __repr__(self) -> str:
        return f"InferencePrecision({self.dtype_name!r}, allow_emulated={self.allow_emulated})"

    def check(self, device_type: str) -> str:
        """"native" or "emulated" for ``device_type``; raises where bf16 is unsupported. Logs
        the decision the first time."""
        if not self.reduced:
            return "native"
        if device_type in self._checked:
            return self._checked[device_type]
        if device_type == "cpu":
            support = cpu_bf16_support()
            if support.native:
                mode = "native"
                logger.info("inference in bfloat16 autocast on CPU (%s; MODEL.INFERENCE_DTYPE=bfloat16); "
                            "post-processing in float32", ", ".join(support.features))
            elif self.allow_emulated:
                mode = "emulated"
                logger.warning(
                    "inference in bfloat16 autocast on CPU, EMULATED: %s, so bf16 ops convert to "
                    "float32 and back and run slower than float32 (MODEL.INFERENCE_DTYPE_ALLOW_EMULATED"
                    "=True; use it to measure bf16 accuracy, not speed)", support.describe())
            else:
                raise UnsupportedInferenceDtypeError(
                    f"MODEL.INFERENCE_DTYPE=bfloat16 needs native bf16 on the CPU ("
                    f"{' or '.join(NATIVE_BF16_CPU_FEATURES)}), but {support.describe()}: bf16 would "
                    "run emulated, slower than float32. Set MODEL.INFERENCE_DTYPE float32 (or "
                    "MODEL.INFERENCE_DTYPE_ALLOW_EMULATED True to run it emulated anyway, e.g. to "
                    "measure its accuracy)")
        elif device_type == "cuda":
            if not torch.cuda.is_available() or not torch.cuda.is_bf16_supported():
                raise UnsupportedInferenceDtypeError(
                    "MODEL.INFERENCE_DTYPE=bfloat16 on CUDA needs a GPU with bf16 support "
                    "(torch.cuda.is_bf16_supported() is False): set MODEL.INFERENCE_DTYPE float32")
            mode = "native"
            logger.info("inference in bfloat16 autocast on CUDA (MODEL.INFERENCE_DTYPE=bfloat16); "
                        "post-processing in float32")
        else:
            raise UnsupportedInferenceDtypeError(
                f"MODEL.INFERENCE_DTYPE=bfloat16 is supported on cpu and cuda, not {device_type!r}: "
                "set MODEL.INFERENCE_DTYPE float32")
        self._checked[device_type] = mode
        return mode

    def autocast(self, device_type: str):
        """The context the network runs in: ``nullcontext`` for float32."""
        if not self.reduced:
            return contextlib.nullcontext()
        self.check(device_type)
        return torch.autocast(device_type, dtype=self.dtype)

    def run(self, network, *args, device_type: str, uncast_keys: Sequence[str] = ()):
        """``network(*args)`` in this precision; outputs float32 (except the entries
        ``uncast_keys`` of a dict output, left as they came). float32: exactly ``network(*args)``."""
        if not self.reduced:
            return network(*args)
        with self.autocast(device_type):
            outputs = network(*args)
        if isinstance(outputs, dict) and uncast_keys:
            return {k: v if k in uncast_keys else outputs_to_float32(v) for k, v in outputs.items()}
        return outputs_to_float32(outputs)
