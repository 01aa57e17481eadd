"""``ONNXPredictor``: a DefaultPredictor / ReferringPredictor whose network runs in onnxruntime."""
import logging
from typing import Optional, Sequence, Union

import numpy as np
import torch
from detectron2.modeling import build_model

from ..engine.batch_predictor import run_in_batches
from .onnx_export import ort_runner, ort_session, require_export_packages
from .registry import build_export_spec

__all__ = ["ONNXPredictor"]

logger = logging.getLogger(__name__)


class ONNXPredictor:
    """Same inputs and outputs as the PyTorch predictor of ``cfg``'s model, with the network in
    onnxruntime (a graph from ``tools/export/export_onnx.py`` of the same config).

    * MaskFormer / Mask2Former / Segmenter: ``predictor(image_bgr)`` -> ``{"sem_seg",
      "panoptic_seg", "instances"}`` as ``DefaultPredictor``; ``predictor([im1, im2, ...])`` ->
      a list, run in batches of ``batch_size`` same-size images.
    * ReSTR: ``predictor(image_bgr, "sentence")`` -> ``{"mask", "prob", "score"}`` (a list for a
      list of sentences, all in one graph call) as ``ReferringPredictor``.

    Pre- and post-processing are the PyTorch code: the meta-architecture is built from ``cfg``
    (its weights are not loaded: only its pre/post-processing runs) and its inference functions
    turn the graph outputs into predictions.

    Args:
        onnx_path: the exported graph.
        cfg: the config it was exported from (test sizes, thresholds, dataset metadata).
        num_threads: onnxruntime intra-op threads (None: onnxruntime's default).
        batch_size: images per graph call for a list of images.
    """

    def __init__(self, onnx_path: str, cfg, num_threads: Optional[int] = None, batch_size: int = 8):
        require_export_packages()
        import onnxruntime

        if cfg.MODEL.get("INFERENCE_DTYPE", "float32") != "float32":
            # the network is the float32 graph in onnxruntime: the switch would not apply
            raise ValueError(f"ONNXPredictor runs the exported float32 graph, but MODEL.INFERENCE_DTYPE is "
                             f"{cfg.MODEL.INFERENCE_DTYPE!r}: set MODEL.INFERENCE_DTYPE float32 for it (bf16 "
                             "inference is a PyTorch switch: DefaultPredictor)")
        self.cfg = cfg.clone()
        self.cfg.defrost()
        self.cfg.MODEL.DEVICE = "cpu"  # onnxruntime's CPU provider: pre/post-processing on CPU too
        self.cfg.freeze()
        self.model = build_model(self.cfg).eval()
        self.spec = build_export_spec(self.model, self.cfg)
        self.session = ort_session(onnx_path, num_threads)
        self._run = ort_runner(self.session)
        self.batch_size = int(batch_size)
        graph_inputs = [i.name for i in self.session.get_inputs()]
        if graph_inputs != list(self.spec.input_names):
            raise ValueError(
                f"{onnx_path} takes inputs {graph_inputs} but a {self.cfg.MODEL.META_ARCHITECTURE} of this config "
                f"needs {list(self.spec.input_names)}: export it again from this config"
            )
        logger.info("ONNXPredictor: %s (%s) in onnxruntime %s", onnx_path, self.cfg.MODEL.META_ARCHITECTURE,
                    onnxruntime.__version__)

    def _network(self, batched_inputs):
        return self.spec.run(self._run, batched_inputs)

    def __call__(self, images: Union[np.ndarray, Sequence[np.ndarray]], *args):
        with torch.no_grad():
            if isinstance(images, np.ndarray):
                inputs = self.spec.predictor_inputs(images, *args)
                return self.spec.predictor_outputs(self._network(inputs), *args)
            if args:
                raise ValueError("a list of images is batched for image-only models; call a referring "
                                 "predictor once per image (with a list of sentences)")
            inputs = [self.spec.predictor_inputs(im)[0] for im in images]
            return [self.spec.predictor_outputs([o]) for o in run_in_batches(inputs, self._network, self.batch_size)]
