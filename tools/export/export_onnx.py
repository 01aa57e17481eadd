#!/usr/bin/env python
"""Export a model (config + weights) to ONNX, check it, and compare onnxruntime with PyTorch.

    python tools/export/export_onnx.py --config-file configs/shapes/mask2former_R18_panoptic.yaml \\
        --output out/m2f.onnx --opts MODEL.WEIGHTS out/m2f/model_final.pth
    python tools/export/export_onnx.py --config-file configs/shapes/restr_shapes.yaml --output restr.onnx \\
        --size 128 128 --check 1 224 160 --check 2 96 96

The graph (see segmentation_core/export and each family's ``export.py``): MaskFormer / Mask2Former
``images`` -> ``pred_logits``, ``pred_masks``; Segmenter ``images`` -> ``logits`` at the input
size; ReSTR ``images`` + token tensors (batch, sentences, T) -> ``pixel_logits``. Batch, height,
width (and ReSTR's sentence count) are dynamic; ``images`` are normalised with
MODEL.PIXEL_MEAN/STD and padded to a multiple of the size divisibility / patch size (the
predictors do both). After export: ``onnx.checker`` (full check), then onnxruntime vs PyTorch
on random inputs at every ``--check`` size (defaults: other sizes than the export size, one
non-square, one an odd multiple of 32); the max abs diff is printed and the tool exits with
status 1 when one exceeds ``--tolerance``.
"""
import argparse
import logging
import sys

DEFAULT_CHECKS = ((1, 224, 160), (3, 96, 288))  # non-square; 7*32 and 3*32 (odd multiples of 32)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("H", "W"),
                   help="height and width of the example input (default 256 256)")
    p.add_argument("--batch", type=int, default=2, help="batch of the example input (>= 2)")
    p.add_argument("--check", nargs=3, type=int, action="append", metavar=("B", "H", "W"),
                   help=f"compare onnxruntime with PyTorch at this batch and size (repeatable; default "
                        f"{' and '.join('x'.join(map(str, c)) for c in DEFAULT_CHECKS)})")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff allowed (default 1e-4)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from detectron2.utils.logger import setup_logger

    from segmentation_core.export import build_export_spec
    from segmentation_core.export.onnx_export import DEFAULT_OPSET, compare_with_pytorch, export_onnx, ort_session
    from train_net import load_config

    for name in ("segmentation_core", "maskformer_d2", "restr_d2"):
        setup_logger(name=name)
    log = logging.getLogger("segmentation_core.export")
    cfg = load_config(args.config_file, args.opts)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        log.warning("MODEL.WEIGHTS is empty: exporting random weights")
    model = model.cpu()
    spec = build_export_spec(model, cfg)
    export_onnx(spec, args.output, batch=args.batch, height=args.size[0], width=args.size[1],
                opset=args.opset or DEFAULT_OPSET)
    checks = [tuple(c) for c in (args.check or DEFAULT_CHECKS)]
    for b, h, w in checks:
        spec.check_size(h, w)
    session = ort_session(args.output)
    worst = 0.0
    for (b, h, w), diffs in zip(checks, compare_with_pytorch(spec, session, checks)):
        text = ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
        print(f"onnxruntime vs PyTorch, batch {b}, {h}x{w}: max abs diff {text}")
        worst = max([worst] + list(diffs.values()))
    print(f"{args.output}: valid (onnx.checker); worst max abs diff {worst:.3g} (tolerance {args.tolerance:g})")
    if not worst <= args.tolerance:
        print(f"ERROR: onnxruntime differs from PyTorch by {worst:.3g} > {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
