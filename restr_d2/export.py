"""ONNX export of Segmenter and ReSTR (``segmentation_core.export``).

Segmenter graph: ``images`` (B, 3, H, W) normalised, H and W multiples of the patch size ->
``logits`` (B, C, H, W) (the official ``Segmenter.forward``: patch-level masks upsampled to the
input size). The meta-arch's ``inference`` (sliding window or whole image, flips, resize,
softmax) runs in Python around it.

ReSTR graph: ``images`` (B, 3, H, W) normalised + the language encoder's token tensors, each
(B, K, T) (K sentences per image; the GloVe encoder's is ``input_ids``, whose pad ids are the
attention mask; Hugging Face encoders add ``attention_mask``) -> ``pixel_logits``
(B, K, H', W'). B, K, H and W are dynamic; tokenisation and post-processing stay in Python.

Export-friendly path (both): the ViT resizes its position embedding to the input grid always
(``always_resize_pos_embed``): the official rule "no resize when the token count equals the
training grid's" is a Python branch a dynamic-size graph cannot hold. Both rules agree except on
a grid other than the training grid with the same token count (e.g. 4x16 patches for an 8x8
training grid): the ONNX predictors refuse such inputs with an error instead of differing.
"""
import logging
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from segmentation_core.export.registry import ExportSpec, OrtRun, register_export_spec

from .modeling.backbone.vit import VisionTransformer, pad_to_patch_multiple

__all__ = ["SegmenterExportSpec", "ReSTRExportSpec", "check_pos_embed_grid"]

logger = logging.getLogger(__name__)

_DIM_MAX = 1024
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _use_always_resized_pos_embed(vit: VisionTransformer, family: str):
    """Switch on ``always_resize_pos_embed``; returns the function that restores it."""
    before = vit.always_resize_pos_embed

    def restore():
        vit.always_resize_pos_embed = before

    if not before:
        vit.always_resize_pos_embed = True
        logger.info(
            "ONNX export of %s: the ViT position embedding is resized to every input grid "
            "(always_resize_pos_embed=True; the official same-token-count shortcut is a Python branch)",
            family,
        )
    return restore


def check_pos_embed_grid(vit: VisionTransformer, height: int, width: int) -> None:
    """Refuse an input whose patch grid differs from the training grid with the same token
    count: PyTorch keeps the embedding unresized there (official rule), the exported graph
    resizes it."""
    grid = (height // vit.patch_size, width // vit.patch_size)
    train = tuple(vit.grid_size)
    if grid != train and grid[0] * grid[1] == train[0] * train[1]:
        raise ValueError(
            f"input grid {grid[0]}x{grid[1]} patches has the training grid's {train[0]}x{train[1]} token "
            "count: the official model reuses the position embedding unresized there, which the "
            "ONNX graph cannot reproduce; use the PyTorch predictor or another input size"
        )


def _spatial_dims(multiple: int) -> Tuple[object, object]:
    Dim = torch.export.Dim
    return (multiple * Dim("height_patches", min=1, max=_DIM_MAX),
            multiple * Dim("width_patches", min=1, max=_DIM_MAX))


# ------------------------------------------------------------------------------------ Segmenter
class _SegmenterGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor]:
        return (self.model.segment(images),)


@register_export_spec("Segmenter")
class SegmenterExportSpec(ExportSpec):
    input_names = ("images",)
    output_names = ("logits",)

    @property
    def size_multiple(self) -> int:
        return int(self.model.patch_size)

    def prepare_for_export(self):
        return _use_always_resized_pos_embed(self.model.encoder, "Segmenter")

    def graph_module(self) -> nn.Module:
        return _SegmenterGraph(self.model)

    def example_inputs(self, batch: int, height: int, width: int):
        return (torch.randn(batch, 3, height, width),)

    def dynamic_shapes(self):
        h, w = _spatial_dims(self.size_multiple)
        return {"images": {0: torch.export.Dim("batch", min=1, max=_DIM_MAX), 2: h, 3: w}}

    def dynamic_axes_description(self):
        return {"images": ("batch", "3", f"height ({self.size_multiple}*k)", f"width ({self.size_multiple}*k)")}

    def run(self, ort_run: OrtRun, batched_inputs: List[Dict]) -> List[Dict]:
        model = self.model

        def segment(images: torch.Tensor) -> torch.Tensor:
            # Segmenter.segment with the network in onnxruntime: pad to the patch size, crop back
            H, W = images.shape[-2:]
            padded = pad_to_patch_multiple(images, model.patch_size)
            check_pos_embed_grid(model.encoder, *padded.shape[-2:])
            (logits,) = ort_run({"images": padded.float().cpu().numpy()})
            return torch.from_numpy(logits)[:, :, :H, :W]

        return [model.inference(model.normalize(x["image"]), x, segment=segment) for x in batched_inputs]


# ---------------------------------------------------------------------------------------- ReSTR
class _ReSTRGraph(nn.Module):
    """(B, 3, H, W) images, token tensors (B, K, T) -> (B, K, H', W') pixel logits: each image's
    ViT features are shared by its K sentences. ``ReSTR.predict``'s steps, written out because
    its "one image or one image per sentence" check is a Python branch on the batch sizes that
    a graph with independent dynamic B and K cannot hold (K sentences per image covers both)."""

    def __init__(self, model: nn.Module, token_names: Tuple[str, ...]):
        super().__init__()
        self.model = model
        self.token_names = token_names

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor]:
        model = self.model
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        B, K, T = input_ids.shape
        flat = {n: given[n].reshape(B * K, T) for n in self.token_names}
        lang = model.encoder_l(**flat)
        feats = model.encoder_v.forward_features(images)
        feats = feats[:, None].expand(B, K, feats.shape[1], feats.shape[2]).reshape(B * K, feats.shape[1], -1)
        grid = (images.shape[-2] // model.patch_size, images.shape[-1] // model.patch_size)
        out = model.fusion_module(feats[:, model.encoder_v.num_extra_tokens:], grid, lang)
        logits = out["pixel_logits"]  # (B * K, 1, H', W')
        return (logits.reshape(B, K, logits.shape[-2], logits.shape[-1]),)


@register_export_spec("ReSTR")
class ReSTRExportSpec(ExportSpec):
    output_names = ("pixel_logits",)

    def __init__(self, model, cfg):
        super().__init__(model, cfg)
        # the token tensors the language encoder's tokenizer makes, in its order
        probe = model.encoder_l.tokenize(["object"])
        self.token_names = tuple(probe)
        unknown = set(self.token_names) - set(_TOKEN_INPUTS)
        if unknown or "input_ids" not in self.token_names:
            raise ValueError(
                f"ONNX export of ReSTR supports token tensors {_TOKEN_INPUTS} (input_ids required); "
                f"{type(model.encoder_l).__name__}.tokenize gives {self.token_names}"
            )
        self.num_tokens = int(next(iter(probe.values())).shape[1])
        self.input_names = ("images",) + self.token_names

    @property
    def size_multiple(self) -> int:
        return int(self.model.patch_size)

    def prepare_for_export(self):
        return _use_always_resized_pos_embed(self.model.encoder_v, "ReSTR")

    def graph_module(self) -> nn.Module:
        return _ReSTRGraph(self.model, self.token_names)

    def example_inputs(self, batch: int, height: int, width: int, sentences_per_image: int = 2):
        """Random images and the tokens of random sentences of 1 to T + 2 words (so some are
        padded and some truncated), drawn from the vocabulary of a word-level encoder."""
        B, K, T = batch, sentences_per_image, self.num_tokens
        vocab = [w for w in getattr(self.model.encoder_l, "vocab", None) or [] if w.isalpha()]
        words = vocab or "the red blue green circle square star left right of big small".split()
        picks = torch.randint(0, len(words), (B * K, T + 2)).tolist()
        lengths = torch.randint(1, T + 3, (B * K,)).tolist()
        sentences = [" ".join(words[i] for i in row[:n]) for row, n in zip(picks, lengths)]
        tokens = self.model.encoder_l.tokenize(sentences)
        return (torch.randn(B, 3, height, width),) + tuple(tokens[n].reshape(B, K, T) for n in self.token_names)

    def dynamic_shapes(self):
        Dim = torch.export.Dim
        batch = Dim("batch", min=1, max=_DIM_MAX)
        sentences = Dim("sentences", min=1, max=_DIM_MAX)
        h, w = _spatial_dims(self.size_multiple)
        shapes = {"images": {0: batch, 2: h, 3: w}}
        shapes.update({n: {0: batch, 1: sentences} for n in self.token_names})
        return shapes

    def dynamic_axes_description(self):
        desc = {"images": ("batch", "3", f"height ({self.size_multiple}*k)", f"width ({self.size_multiple}*k)")}
        desc.update({n: ("batch", "sentences", str(self.num_tokens)) for n in self.token_names})
        return desc

    def _referring_io(self):
        # ReferringPredictor's pre/post-processing without its model
        if not hasattr(self, "_io"):
            from .engine.predictor import ReferringPredictor

            self._io = ReferringPredictor.__new__(ReferringPredictor)
            self._io._setup_preprocessing(self.cfg)
        return self._io

    def predictor_inputs(self, image_bgr, sentences=None):
        if sentences is None:
            raise TypeError("a referring model needs sentences: predictor(image_bgr, 'the red circle')")
        return self._referring_io().make_inputs(image_bgr, sentences)

    def predictor_outputs(self, outputs, sentences=None):
        return self._referring_io().format_outputs(outputs, sentences)

    def run(self, ort_run: OrtRun, batched_inputs: List[Dict]) -> List[Dict]:
        """ReSTR.forward in eval mode with the network in onnxruntime."""
        model = self.model
        images = model.preprocess_images(batched_inputs)
        check_pos_embed_grid(model.encoder_v, *images.tensor.shape[-2:])
        B = images.tensor.shape[0]
        K = len(batched_inputs) // B
        tokens = model.encoder_l.tokenize([x["sentence"] for x in batched_inputs])
        feeds = {"images": images.tensor.float().cpu().numpy()}
        feeds.update({n: tokens[n].reshape(B, K, -1).cpu().numpy() for n in self.token_names})
        (logits,) = ort_run(feeds)
        logits = torch.from_numpy(logits).reshape(B * K, 1, logits.shape[-2], logits.shape[-1])
        return model.postprocess(logits, batched_inputs, images)
