"""``ExportSpec``: what one meta-architecture's ONNX graph computes and how it is run."""
import contextlib
import logging
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

__all__ = ["ONNX_EXPORT_REGISTRY", "register_export_spec", "ExportSpec", "build_export_spec", "OrtRun"]

logger = logging.getLogger(__name__)

# meta-architecture name -> ExportSpec subclass, filled by ``register_export_spec``
ONNX_EXPORT_REGISTRY: Dict[str, type] = {}


def register_export_spec(meta_architecture: str):
    """Class decorator: the ``ExportSpec`` of ``cfg.MODEL.META_ARCHITECTURE == meta_architecture``."""

    def register(cls):
        if meta_architecture in ONNX_EXPORT_REGISTRY:
            raise KeyError(f"an ONNX export spec for {meta_architecture!r} is already registered")
        ONNX_EXPORT_REGISTRY[meta_architecture] = cls
        return cls

    return register


# A compiled graph: {input name: array} -> outputs in ``output_names`` order.
OrtRun = Callable[[Dict[str, np.ndarray]], List[np.ndarray]]


class ExportSpec:
    """How a meta-architecture is exported and how its exported graph is run.

    The graph holds the network only; the pre-processing (resize, normalisation, padding to
    ``size_multiple``, tokenisation) and the post-processing stay in Python and are the
    meta-architecture's own code, called by ``run``.

    Subclasses set ``input_names``, ``output_names`` and implement the methods below.
    """

    input_names: Tuple[str, ...] = ("images",)
    output_names: Tuple[str, ...] = ()

    def __init__(self, model: nn.Module, cfg):
        self.model = model
        self.cfg = cfg

    @property
    def size_multiple(self) -> int:
        """Graph inputs' height and width must be multiples of this."""
        raise NotImplementedError

    def prepare_for_export(self) -> Callable[[], None]:
        """Switch the model to its export-friendly paths (explicit, logged; outputs equal to the
        default paths within float rounding); returns a function that switches them back."""
        return lambda: None

    @contextlib.contextmanager
    def export_paths(self):
        """The model on its export-friendly paths inside the ``with`` block only."""
        restore = self.prepare_for_export()
        try:
            yield self
        finally:
            restore()

    def graph_module(self) -> nn.Module:
        """An ``nn.Module`` whose ``forward`` takes the inputs as keyword arguments named
        ``input_names`` and returns the outputs in ``output_names`` order."""
        raise NotImplementedError

    def example_inputs(self, batch: int, height: int, width: int) -> Tuple[torch.Tensor, ...]:
        """Random graph inputs of the given batch and spatial size, in ``input_names`` order."""
        raise NotImplementedError

    def dynamic_shapes(self) -> Dict[str, Dict[int, object]]:
        """``torch.export`` dynamic shapes per input name."""
        raise NotImplementedError

    def dynamic_axes_description(self) -> Dict[str, Sequence[str]]:
        """Names of every input's axes, for documentation and error messages."""
        raise NotImplementedError

    def run(self, ort_run: OrtRun, batched_inputs: List[Dict]) -> List[Dict]:
        """detectron2 batched inputs (as the model's ``forward`` takes them in eval mode) ->
        the model's inference outputs, with the network replaced by ``ort_run``."""
        raise NotImplementedError

    # ---- predictor side (ONNXPredictor): DefaultPredictor's inputs and outputs by default
    def predictor_inputs(self, image_bgr: np.ndarray, *args) -> List[Dict]:
        """The model's batched inputs for one predictor call."""
        if args:
            raise TypeError(f"{self.cfg.MODEL.META_ARCHITECTURE} predictor takes an image only, got {len(args)} more arguments")
        if not hasattr(self, "_default_inputs"):
            from ..engine.batch_predictor import DefaultInputs

            self._default_inputs = DefaultInputs(self.cfg)
        return [self._default_inputs(image_bgr)]

    def predictor_outputs(self, outputs: List[Dict], *args):
        """The model's outputs -> what the PyTorch predictor returns."""
        return outputs[0]

    def check_size(self, height: int, width: int) -> None:
        m = self.size_multiple
        if height % m or width % m or height <= 0 or width <= 0:
            raise ValueError(
                f"{type(self).__name__}: graph input size {height}x{width} must be a positive "
                f"multiple of {m}; pad the normalised images first (the predictors do)"
            )


def build_export_spec(model: nn.Module, cfg) -> ExportSpec:
    """The registered ``ExportSpec`` of ``cfg.MODEL.META_ARCHITECTURE`` for ``model``."""
    name = cfg.MODEL.META_ARCHITECTURE
    if name not in ONNX_EXPORT_REGISTRY:
        raise ValueError(
            f"no ONNX export for MODEL.META_ARCHITECTURE={name!r}; exportable: "
            f"{sorted(ONNX_EXPORT_REGISTRY)} (import maskformer_d2 and restr_d2 to "
            "register theirs)"
        )
    return ONNX_EXPORT_REGISTRY[name](model, cfg)
