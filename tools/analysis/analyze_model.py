#!/usr/bin/env python3
"""Parameters and FLOPs of any restr-d2 config.

    python tools/analysis/analyze_model.py --config-file configs/shapes/mask2former_R18_panoptic.yaml \\
        --tasks parameter flop --input-size 512 512 [--opts KEY VALUE ...]

* ``parameter``: total and trainable parameter counts, per top-level module, and
  fvcore's ``parameter_count_table`` down to ``--max-depth``.
* ``flop``: fvcore ``FlopCountAnalysis`` of one inference on a (3, H, W) input (random
  pixels; ``--input-size H W``, default the square ``INPUT.MIN_SIZE_TEST``, or
  ``INPUT.IMAGE_SIZE`` for referring models), by operator and per top-level module.
  fvcore counts one fused multiply-add as one flop (detectron2's and the official
  MaskFormer/Mask2Former convention: their "GFLOPs" are GMACs); ``2 x`` is the FLOP count.
  Ops fvcore has no formula for are listed, not guessed.
* ``structure``: the module tree.

Weights are not needed (random initialisation unless ``MODEL.WEIGHTS`` is given).
"""
import argparse
import logging
from collections import OrderedDict


import torch
from torch import nn

from detectron2.modeling import build_model
from fvcore.nn import parameter_count_table
from detectron2.utils.logger import setup_logger

from segmentation_core.config import load_config
from segmentation_core.safe_checkpoint import SafeDetectionCheckpointer

__all__ = ["count_parameters", "count_flops", "InferenceAdapter", "main"]

logger = logging.getLogger("restr_d2.analyze_model")
TASKS = ("parameter", "flop", "structure")
REFERRING_META_ARCHITECTURES = ("ReSTR",)


def count_parameters(model):
    """``{"total", "trainable", "modules": {top-level name: (total, trainable)}}``; parameters
    registered directly on the model (not in a child) are listed under ``"(self)"``."""
    modules = OrderedDict()
    for name, child in model.named_children():
        params = list(child.parameters())
        if params:
            modules[name] = (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
    own = list(model.parameters(recurse=False))
    if own:
        modules["(self)"] = (sum(p.numel() for p in own), sum(p.numel() for p in own if p.requires_grad))
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "modules": modules,
    }


def _flatten_tensors(obj, out):
    """All tensors in a model output (dicts, lists, tuples, ``Instances``), in a fixed order,
    so that the traced graph keeps every branch that produces them."""
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, dict):
        for k in sorted(obj):
            _flatten_tensors(obj[k], out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _flatten_tensors(v, out)
    elif hasattr(obj, "get_fields"):  # Instances
        _flatten_tensors(obj.get_fields(), out)
    elif hasattr(obj, "tensor") and isinstance(obj.tensor, torch.Tensor):  # Boxes
        out.append(obj.tensor)
    return out


class InferenceAdapter(nn.Module):
    """``image (3, H, W) -> tuple of output tensors`` around a detectron2-style model, which
    takes ``list[dict]`` (with ints and a sentence that ``torch.jit.trace`` cannot carry)."""

    def __init__(self, model, sentence=None):
        super().__init__()
        self.model = model
        self.sentence = sentence

    def forward(self, image):
        h, w = image.shape[-2:]
        inp = {"image": image, "height": int(h), "width": int(w)}
        if self.sentence is not None:
            inp.update(sentence=self.sentence, resized_size=(int(h), int(w)))
        return tuple(_flatten_tensors(self.model([inp]), []))


def count_flops(model, image, sentence=None):
    """fvcore counts of one inference; returns ``{"total", "by_operator", "by_module",
    "unsupported"}`` (fused multiply-adds)."""
    from fvcore.nn import FlopCountAnalysis

    from tools.benchmark.flops import _EXTRA_HANDLES  # SDPA, baddbmm, grid_sample formulas

    model.eval()
    adapter = InferenceAdapter(model, sentence).eval()
    analysis = FlopCountAnalysis(adapter, (image,))
    analysis.set_op_handle(**_EXTRA_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad():
        total = analysis.total()
    by_module = analysis.by_module()
    prefix = "model."
    top = OrderedDict(
        (name, by_module.get(prefix + name, 0)) for name, _ in model.named_children()
    )
    return {
        "total": total,
        "by_operator": dict(sorted(analysis.by_operator().items(), key=lambda kv: -kv[1])),
        "by_module": top,
        "unsupported": dict(analysis.unsupported_ops()),
    }


def setup_cfg(args):
    return load_config(args.config_file, args.opts or [])


def default_input_size(cfg):
    if cfg.MODEL.META_ARCHITECTURE in REFERRING_META_ARCHITECTURES:
        return int(cfg.INPUT.IMAGE_SIZE), int(cfg.INPUT.IMAGE_SIZE)
    size = cfg.INPUT.MIN_SIZE_TEST
    return int(size), int(size)


def get_parser():
    parser = argparse.ArgumentParser(description="Parameters and FLOPs of a restr-d2 model")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=["parameter", "flop"])
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                        help="input image size for 'flop' (default: INPUT.MIN_SIZE_TEST square)")
    parser.add_argument("--text", default="the object on the left",
                        help="the sentence fed to referring models for 'flop'")
    parser.add_argument("--max-depth", type=int, default=3, help="depth of the parameter table")
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY VALUE")
    return parser


def _fmt(n):
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3f}{unit}"
    return str(n)


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="restr_d2.analyze_model")
    cfg = setup_cfg(args)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        SafeDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    results = {}
    if "structure" in args.tasks:
        logger.info("Model structure:\n" + str(model))
        results["structure"] = str(model)
    if "parameter" in args.tasks:
        p = count_parameters(model)
        lines = [f"{name:<24s} {_fmt(t):>10s} {_fmt(tr):>10s}" for name, (t, tr) in p["modules"].items()]
        logger.info(
            f"Parameters: total {p['total']} ({_fmt(p['total'])}), trainable {p['trainable']} "
            f"({_fmt(p['trainable'])})\n{'module':<24s} {'total':>10s} {'trainable':>10s}\n" + "\n".join(lines)
            + "\n" + parameter_count_table(model, max_depth=args.max_depth)
        )
        results["parameter"] = p
    if "flop" in args.tasks:
        h, w = args.input_size or default_input_size(cfg)
        generator = torch.Generator().manual_seed(0)
        image = torch.randint(0, 256, (3, h, w), generator=generator, dtype=torch.uint8).to(cfg.MODEL.DEVICE)
        sentence = args.text if cfg.MODEL.META_ARCHITECTURE in REFERRING_META_ARCHITECTURES else None
        f = count_flops(model, image, sentence)
        logger.info(
            f"FLOPs (fused multiply-adds, fvcore) for a {h}x{w} input: {_fmt(f['total'])} "
            f"({_fmt(2 * f['total'])} FLOPs)\nby module: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in f["by_module"].items())
            + "\nby operator: " + ", ".join(f"{k} {_fmt(v)}" for k, v in f["by_operator"].items())
            + (f"\nnot counted (no fvcore formula): {f['unsupported']}" if f["unsupported"] else "")
        )
        results["flop"] = dict(f, input_size=(h, w))
    return results


if __name__ == "__main__":
    main()
