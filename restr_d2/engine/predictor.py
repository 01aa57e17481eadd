"""``ReferringPredictor``: one image + referring expression(s) -> mask(s), like detectron2's
``DefaultPredictor`` for referring models (ReSTR)."""
import logging
from typing import Dict, List, Sequence, Union

import numpy as np
import torch
from detectron2.modeling import build_model

from segmentation_core.checkpoint_policy import load_weights_checked, weights_strict_from_cfg

from ..modeling.restr.resize import resize_and_pad, resize_and_pad_uint8

__all__ = ["ReferringPredictor"]

logger = logging.getLogger(__name__)


class ReferringPredictor:
    """Builds ``cfg.MODEL.META_ARCHITECTURE`` (e.g. "ReSTR") in eval mode, loads
    ``cfg.MODEL.WEIGHTS`` and segments the object a sentence refers to.

    ``predictor(image_bgr, "the man on the left")`` ->
    ``{"mask": (H, W) bool, "prob": (H, W) float32, "score": float}`` (torch tensors on the
    model's device, at the original resolution). Passing a list of sentences returns a list of
    such dicts, computed in one batch for the same image.

    Preprocessing follows ``MODEL.RESTR.TEST.PAD_LAYOUT``: "bottom_right" resizes the long side
    to ``INPUT.IMAGE_SIZE`` like the referring mapper (PIL bilinear on uint8) and pads with
    black; "center" reproduces the official evaluation (float bilinear resize without antialias,
    centred, padded with the pixel mean, i.e. 0 after normalisation). Bad sentences (empty,
    whitespace, no word at all) raise ``ValueError`` (see ``modeling/language/tokenizer.py``).
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if cfg.MODEL.WEIGHTS:
            # the weights must cover the whole model (a foreign or partial checkpoint is an error)
            load_weights_checked(self.model, cfg.MODEL.WEIGHTS,
                                 policy="complete" if weights_strict_from_cfg(cfg) else "lenient")
        else:
            logger.warning("ReferringPredictor: MODEL.WEIGHTS is empty, using random weights")
        self._setup_preprocessing(cfg)

    def _setup_preprocessing(self, cfg) -> None:
        """Pre/post-processing settings (shared with the ONNX predictor, which has no model)."""
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {self.input_format!r}")
        self.image_size = int(cfg.INPUT.IMAGE_SIZE)
        self.pad_layout = cfg.MODEL.RESTR.TEST.PAD_LAYOUT
        self.mask_threshold = float(cfg.MODEL.RESTR.TEST.MASK_THRESHOLD)
        self.pixel_mean = [float(v) for v in cfg.MODEL.PIXEL_MEAN]

    def describe_tokens(self, sentence: str) -> Dict:
        """What the language encoder reads of ``sentence``: ``{"tokens": [{"text", "token",
        "unknown"}], "truncated": [...]}`` (``unknown``: the word became ``<unk>`` / ``[UNK]``,
        so the model cannot tell it from any other unknown word). Bad text raises like
        ``__call__``."""
        encoder = self.model.encoder_l
        if not hasattr(encoder, "describe_tokens"):
            raise NotImplementedError(
                f"{type(encoder).__name__} has no describe_tokens(sentence); add one to list "
                "the tokens it reads"
            )
        return encoder.describe_tokens(sentence)

    def _preprocess(self, image_bgr: np.ndarray) -> Dict:
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(
                "image must be an (H, W, 3) numpy array in BGR order (as cv2.imread returns), got "
                f"{type(image_bgr).__name__} {getattr(image_bgr, 'shape', None)}"
                + ("; cv2.imread returns None for a file it cannot read: "
                   "segmentation_core.validation.read_image_checked(path, 'BGR') reads it as training does "
                   "and names the file and the reason" if image_bgr is None else "")
            )
        if image_bgr.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (0..255), got {image_bgr.dtype}")
        H, W = image_bgr.shape[:2]
        if H == 0 or W == 0:
            raise ValueError(f"empty image of size {H}x{W}")
        image = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        S = self.image_size
        if self.pad_layout == "center":
            t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None]
            mean = torch.tensor(self.pixel_mean).view(1, -1, 1, 1)
            padded, (_, _, h, w) = resize_and_pad(t - mean, S, "center", 0.0)
            tensor = (padded + mean)[0]
        else:
            # the referring mapper's resize: long side to S, PIL bilinear, black bottom/right pad
            padded, (h, w), _ = resize_and_pad_uint8(image, S)
            tensor = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))
        return {"image": tensor, "height": H, "width": W, "resized_size": (h, w)}

    def __call__(
        self, image_bgr: np.ndarray, sentences: Union[str, Sequence[str]]
    ) -> Union[Dict, List[Dict]]:
        inputs = self.make_inputs(image_bgr, sentences)
        with torch.no_grad():
            outputs = self.model(inputs)
        return self.format_outputs(outputs, sentences)

    def make_inputs(self, image_bgr: np.ndarray, sentences: Union[str, Sequence[str]]) -> List[Dict]:
        """The model's batched inputs: one dict per sentence, all holding the same image tensor
        (so the model runs the vision encoder once)."""
        single = isinstance(sentences, str)
        if not single and not (isinstance(sentences, (list, tuple))
                               and all(isinstance(s, str) for s in sentences)):
            given = type(sentences).__name__ if not isinstance(sentences, (list, tuple)) else (
                f"a {type(sentences).__name__} holding "
                + ", ".join(sorted({type(s).__name__ for s in sentences if not isinstance(s, str)})))
            raise TypeError(f"sentences must be a str or a list of str, got {given}: {sentences!r:.100}")
        sentence_list = [sentences] if single else list(sentences)
        if not sentence_list:
            raise ValueError("no sentence given: pass a str or a non-empty list of str")
        base = self._preprocess(image_bgr)
        return [dict(base, sentence=s) for s in sentence_list]

    def format_outputs(self, outputs: List[Dict], sentences: Union[str, Sequence[str]]) -> Union[Dict, List[Dict]]:
        """Model outputs (``ref_seg``, ``ref_score``) -> ``{"mask", "prob", "score"}`` per sentence."""
        results = [
            {
                "mask": o["ref_seg"] > self.mask_threshold,
                "prob": o["ref_seg"],
                "score": float(o["ref_score"]),
            }
            for o in outputs
        ]
        return results[0] if isinstance(sentences, str) else results
