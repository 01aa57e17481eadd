"""Export a model to ONNX with dynamic batch / height / width and check it in onnxruntime.

Exporter: ``torch.onnx.export(dynamo=True)`` (``torch.export`` + onnxscript). A dimension
declared dynamic that the model freezes (a Python branch or ``int()`` on an input size) is an
export error rather than a graph that silently only works at the example size. The example
batch is 2: ``torch.export`` specialises a size-1 dimension to the constant 1.
"""
import logging
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .registry import ExportSpec, OrtRun

__all__ = [
    "require_export_packages",
    "export_onnx",
    "ort_session",
    "ort_runner",
    "compare_with_pytorch",
    "DEFAULT_OPSET",
]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18  # GridSample, Resize, LayerNormalization


def require_export_packages():
    """Import onnx / onnxruntime, or fail naming the extra that installs them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"ONNX export needs onnx, onnxruntime and onnxscript ({e}); install them with "
            "`pip install .[export]` (or `make install`, which includes them)"
        ) from e


def export_onnx(
    spec: ExportSpec,
    path: str,
    *,
    batch: int = 2,
    height: int,
    width: int,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> str:
    """Export ``spec.graph_module()`` to ``path``; returns the path.

    Args:
        batch, height, width: size of the example input (any batch > 1; height and width
            multiples of ``spec.size_multiple``). The graph accepts other sizes.
        check: run ``onnx.checker.check_model(full_check=True)`` (shape inference included).
    """
    require_export_packages()
    import onnx

    if batch < 2:
        raise ValueError("export batch must be >= 2: torch.export turns a size-1 batch into a constant 1")
    spec.check_size(height, width)
    module = spec.graph_module().eval()
    inputs = spec.example_inputs(batch, height, width)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    start = time.perf_counter()
    with torch.no_grad(), spec.export_paths():
        torch.onnx.export(
            module,
            (),
            path,
            kwargs=dict(zip(spec.input_names, inputs)),
            dynamo=True,
            opset_version=opset,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_shapes=spec.dynamic_shapes(),
            external_data=False,
            verbose=False,
        )
    logger.info(
        "ONNX export of %s: %s (opset %d, example %dx3x%dx%d, %.1f s; dynamic axes %s)",
        spec.cfg.MODEL.META_ARCHITECTURE, path, opset, batch, height, width,
        time.perf_counter() - start, spec.dynamic_axes_description(),
    )
    if check:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        logger.info("onnx.checker: %s is valid", path)
    return path


def ort_session(path: str, num_threads: Optional[int] = None):
    """An onnxruntime CPU ``InferenceSession`` (``num_threads`` intra-op threads; None lets
    onnxruntime choose)."""
    require_export_packages()
    import onnxruntime as ort

    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model {path!r} does not exist; create it with tools/export/export_onnx.py")
    options = ort.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_runner(session) -> OrtRun:
    """``{name: array} -> [outputs]`` over a session, checking the input names."""
    expected = [i.name for i in session.get_inputs()]

    def run(feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        if sorted(feeds) != sorted(expected):
            raise ValueError(
                f"the ONNX graph takes inputs {expected}, got {sorted(feeds)}: was it exported "
                "from a model with another config?"
            )
        return session.run(None, feeds)

    return run


def compare_with_pytorch(
    spec: ExportSpec,
    session,
    sizes: Sequence[Tuple[int, int, int]],
    seed: int = 0,
) -> List[Dict[str, float]]:
    """Run the graph in onnxruntime and the model in PyTorch (its default paths, not the
    export-friendly ones) on random inputs of each (batch, height, width); returns per size
    ``{output name: max abs diff}``."""
    module = spec.graph_module().eval()
    results = []
    for batch, height, width in sizes:
        torch.manual_seed(seed)
        inputs = spec.example_inputs(batch, height, width)
        with torch.no_grad():
            expected = module(**dict(zip(spec.input_names, inputs)))
        got = session.run(None, {n: x.numpy() for n, x in zip(spec.input_names, inputs)})
        diffs = {}
        for name, e, g in zip(spec.output_names, expected, got):
            if tuple(e.shape) != tuple(g.shape):
                raise AssertionError(f"{name}: onnxruntime shape {g.shape} != PyTorch {tuple(e.shape)}")
            diffs[name] = float((torch.from_numpy(g) - e).abs().max()) if e.numel() else 0.0
        logger.info("onnxruntime vs PyTorch at batch %d, %dx%d: max abs diff %s", batch, height, width, diffs)
        results.append(diffs)
    return results
