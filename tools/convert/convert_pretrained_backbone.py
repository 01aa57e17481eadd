#!/usr/bin/env python3
"""Convert ImageNet backbones to detectron2 ``.pkl`` (or ``.safetensors``) checkpoints.

    python tools/convert/convert_pretrained_backbone.py --format torchvision R-50.pth R-50.pkl
    python tools/convert/convert_pretrained_backbone.py --format timm-swin swin_tiny.pth swin_tiny.safetensors

* ``torchvision``: a torchvision ResNet-50/101 (or any torchvision ResNet) state dict ->
  detectron2 ``ResNet`` keys (``stem.conv1``, ``res2.0.conv1.norm``, ``res2.0.shortcut``...).
  Use it with ``MODEL.RESNETS.STRIDE_IN_1X1 False`` (torchvision strides in the 3x3 conv),
  ``MODEL.PIXEL_MEAN [123.675, 116.280, 103.530]``, ``PIXEL_STD [58.395, 57.120, 57.375]``,
  ``INPUT.FORMAT RGB``, as the Mask2Former R50 configs do.
* ``timm-swin``: a timm ``SwinTransformer`` (v1) state dict -> the official Swin keys that
  ``maskformer_d2``'s ``D2SwinTransformer`` uses: timm >= 0.9 puts each patch merging at the
  start of the next stage (``layers.{i+1}.downsample``), the official code at the end of the
  stage (``layers.{i}.downsample``). The final ``norm`` becomes ``norm3`` (the res5 norm, the
  same LayerNorm on the same tensor); ``norm0``-``norm2`` do not exist in an ImageNet model and
  are written with LayerNorm's initial values (weight 1, bias 0), and
  ``relative_position_index`` (a non-persistent buffer in timm) is recomputed, so that the
  result loads with no missing or unexpected key. Same weights, one behavioural difference
  of the two implementations: timm turns the shifted window off in a stage whose feature map
  is no larger than the window (res5 of a 224 px input with window 7), the official Swin does
  not; features agree wherever every map is larger than the window.

The classifier (``fc`` / ``head``) and BatchNorm's ``num_batches_tracked`` are dropped.
Output: ``{"model": {name: numpy array}, "__author__": ..., "matching_heuristics": True}``,
which ``DetectionCheckpointer`` loads into ``model.backbone`` (matching heuristics add the
``backbone.`` prefix). An output named ``*.safetensors`` holds the same tensors, with
``__author__`` and ``matching_heuristics`` in its metadata. The source is read with
``torch.load(weights_only=True)``.
"""
import argparse
import logging
import os
import pickle
import re
from collections import OrderedDict


import torch

__all__ = ["convert_torchvision_resnet", "convert_timm_swin", "load_state_dict", "save_d2_pkl", "main"]

logger = logging.getLogger("restr_d2.convert_pretrained_backbone")
FORMATS = ("torchvision", "timm-swin")


def load_state_dict(path):
    """A state dict from a ``.pth`` (bare, or under "model" / "state_dict" / "state_dict_ema")."""
    from segmentation_core.safe_pickle import torch_load_weights_only

    obj = torch_load_weights_only(path)  # an UnsafePickleError names the file and the global
    for key in ("model", "state_dict", "state_dict_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path!r} holds no state dict of tensors")
    return obj


def _torchvision_key(k):
    parts = k.split(".")
    if parts[0].startswith("layer"):
        # layer{1..4}.{block}.{conv,bn}{1..3} / downsample.{0,1}
        stage = f"res{int(parts[0][len('layer'):]) + 1}"
        rest = ".".join(parts[1:])
    else:  # conv1 / bn1 of the stem
        stage, rest = "stem", k
    rest = re.sub(r"\bbn(\d)\.", r"conv\1.norm.", rest)
    rest = rest.replace("downsample.0.", "shortcut.").replace("downsample.1.", "shortcut.norm.")
    return f"{stage}.{rest}"


def convert_torchvision_resnet(state_dict):
    """torchvision ResNet state dict -> OrderedDict of detectron2 ``ResNet`` keys (tensors)."""
    if "layer1.0.conv1.weight" not in state_dict or "conv1.weight" not in state_dict:
        raise ValueError(
            "Not a torchvision ResNet state dict (no 'conv1.weight' / 'layer1.0.conv1.weight'); "
            f"first keys: {list(state_dict)[:5]}"
        )
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith("fc.") or k.endswith("num_batches_tracked"):
            continue
        out[_torchvision_key(k)] = v
    return out


def _check_timm_swin(state_dict):
    if "patch_embed.proj.weight" not in state_dict or not any(".blocks." in k for k in state_dict):
        raise ValueError(
            "Not a timm Swin state dict (no 'patch_embed.proj.weight' / 'layers.N.blocks.*'); "
            f"first keys: {list(state_dict)[:5]}"
        )
    v2 = [k for k in state_dict if "logit_scale" in k or "cpb_mlp" in k]
    if v2:
        raise ValueError(
            f"Swin V2 weights ({v2[0]}, ...) do not fit D2SwinTransformer (Swin V1); use a V1 model"
        )


def convert_timm_swin(state_dict):
    """timm Swin V1 state dict -> OrderedDict of official ``D2SwinTransformer`` keys."""
    from maskformer_d2.modeling.backbone.swin import relative_position_index

    _check_timm_swin(state_dict)
    num_stages = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"layers\.(\d+)\.", k)))
    # timm >= 0.9 merges patches at the start of stages 1..; older timm (and the official code)
    # at the end of stages 0..
    start_layout = "layers.0.downsample.reduction.weight" not in state_dict
    out = OrderedDict()
    for k, v in state_dict.items():
        if k.startswith("head") or k.endswith(("relative_position_index", "attn_mask")):
            continue
        if start_layout:
            k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k)
        if k.startswith("norm."):
            k = f"norm{num_stages - 1}." + k[len("norm."):]
        out[k] = v
        if k.endswith("attn.relative_position_bias_table"):
            window = int(round((v.shape[0] ** 0.5 + 1) / 2))
            if (2 * window - 1) ** 2 != v.shape[0]:
                raise ValueError(f"{k} has {v.shape[0]} rows, not (2 * window - 1)^2")
            out[k.replace("relative_position_bias_table", "relative_position_index")] = relative_position_index(window)
    for i in range(num_stages - 1):
        dim = out[f"layers.{i}.blocks.0.norm1.weight"].shape[0]
        out[f"norm{i}.weight"] = torch.ones(dim)
        out[f"norm{i}.bias"] = torch.zeros(dim)
    return out


def save_d2_pkl(state_dict, path, author):
    obj = {
        "model": {k: v.detach().cpu().numpy() for k, v in state_dict.items()},
        "__author__": author,
        "matching_heuristics": True,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return obj


def get_parser():
    parser = argparse.ArgumentParser(description="ImageNet backbone -> detectron2 .pkl")
    parser.add_argument("--format", required=True, choices=FORMATS, help="layout of the source state dict")
    parser.add_argument("source", help=".pth state dict (torchvision ResNet or timm Swin V1)")
    parser.add_argument("output", help="output .pkl (detectron2 model-zoo layout) or .safetensors")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    sd = load_state_dict(args.source)
    if args.format == "torchvision":
        converted, author = convert_torchvision_resnet(sd), "torchvision"
    else:
        converted, author = convert_timm_swin(sd), "timm"
    if args.output.endswith(".safetensors"):
        from segmentation_core.safe_checkpoint import save_checkpoint

        save_checkpoint({"model": converted, "__author__": author, "matching_heuristics": True}, args.output)
    else:
        save_d2_pkl(converted, args.output, author)
    logger.info(f"{args.source} ({args.format}, {len(sd)} tensors) -> {args.output} ({len(converted)} tensors)")
    return converted


if __name__ == "__main__":
    main()
