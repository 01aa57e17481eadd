"""ONNX export of every family, an onnxruntime predictor and batched inference.

* ``registry.py``: ``ONNX_EXPORT_REGISTRY`` maps a meta-architecture name to its ``ExportSpec``
  (what the graph computes, its inputs and dynamic dimensions, and how the meta-arch's own
  post-processing turns the graph outputs into predictions). The plugins register theirs
  (``maskformer_d2/export.py``, ``restr_d2/export.py``), so this core imports none of them.
* ``onnx_export.py``: ``export_onnx`` (torch.export-based ONNX exporter, dynamic batch / height /
  width, ``onnx.checker``) and ``compare_with_pytorch`` (onnxruntime vs PyTorch, max abs diff).
* ``predictor.py``: ``ONNXPredictor(onnx_path, cfg)`` (DefaultPredictor / ReferringPredictor
  inputs and outputs) and ``BatchPredictor(cfg)`` (a list of images in, a list of outputs out).

``onnx`` / ``onnxruntime`` / ``onnxscript`` are the optional extra ``pip install .[export]``;
they are imported only when exporting or running a graph.
"""
from .registry import ONNX_EXPORT_REGISTRY, ExportSpec, build_export_spec, register_export_spec  # noqa: F401
