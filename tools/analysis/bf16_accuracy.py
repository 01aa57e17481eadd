#!/usr/bin/env python3
"""Accuracy of bfloat16 inference (``MODEL.INFERENCE_DTYPE bfloat16``) against float32.

One model, one pass over the test set: every image goes through the float32 model and the
bfloat16 model (same weights), each output to its own evaluators. Reports each metric
(PQ, mIoU, AP, ... as the dataset's evaluators give them) for both, their difference, and per
image how far the bf16 semantic prediction is from the fp32 one: the mean IoU of the bf16
label map against the fp32 label map as ground truth (over the classes either predicts), and
the fraction of pixels with the same label. Where the CPU lacks native bf16 (``avx512_bf16`` /
``amx_bf16``) give ``--allow-emulated``: same numbers (emulation rounds like the native
instructions), only slower.

    python tools/analysis/bf16_accuracy.py --config-file configs/shapes/mask2former_R18_panoptic.yaml \\
        --weights output/bf16_accuracy/train/model_final.pth --allow-emulated \\
        --output output/bf16_accuracy/eval [--opts KEY VALUE ...]

``--weights`` is a checkpoint of that config (``make demo`` writes one to
``output/demo/train/model_final.pth``; ``train_net.py --config-file ... OUTPUT_DIR DIR`` another).
Writes ``summary.json`` (and the evaluators' files) under ``--output``.
"""
import argparse
import json
import logging
import os
import sys
import time
from typing import Dict, List

import torch

logger = logging.getLogger("restr_d2.bf16_accuracy")

__all__ = ["label_map_agreement", "metric_differences", "main"]


def label_map_agreement(reference: torch.Tensor, other: torch.Tensor) -> Dict[str, float]:
    """(H, W) integer label maps -> ``{"miou", "pixel_agreement"}``: the mean IoU of ``other``
    against ``reference`` over the labels present in either (1.0 when identical)."""
    labels = torch.unique(torch.cat([reference.flatten(), other.flatten()]))
    ious = []
    for c in labels.tolist():
        a, b = reference == c, other == c
        ious.append((a & b).sum().item() / (a | b).sum().item())
    return {"miou": sum(ious) / len(ious), "pixel_agreement": (reference == other).float().mean().item()}


def _flat_metrics(results: Dict) -> Dict[str, float]:
    """{"panoptic_seg/PQ": ..., "sem_seg/mIoU": ...} from detectron2's nested results."""
    out = {}
    for task, metrics in results.items():
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                out[f"{task}/{k}"] = float(v)
    return out


def metric_differences(fp32: Dict, bf16: Dict) -> Dict[str, Dict[str, float]]:
    """{metric: {"fp32", "bf16", "bf16_minus_fp32"}} for the metrics both results have."""
    a, b = _flat_metrics(fp32), _flat_metrics(bf16)
    return {k: {"fp32": a[k], "bf16": b[k], "bf16_minus_fp32": b[k] - a[k]} for k in a if k in b}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", required=True, help="checkpoint covering the whole model")
    p.add_argument("--output", required=True, help="folder for summary.json and the evaluators' files")
    p.add_argument("--allow-emulated", action="store_true",
                   help="run bf16 even where the CPU emulates it (MODEL.INFERENCE_DTYPE_ALLOW_EMULATED)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ...")
    return p.parse_args(argv)


def _build(cfg):
    from segmentation_core.checkpoint_policy import load_weights_checked
    from segmentation_core.engine.trainer import Trainer

    model = Trainer.build_model(cfg)
    load_weights_checked(model, cfg.MODEL.WEIGHTS, policy="complete")
    return model.eval()


def main(argv=None) -> Dict:
    args = parse_args(argv)
    import segmentation_core  # noqa: F401  (imports detectron2 quietly)
    from detectron2.utils.logger import setup_logger

    import maskformer_d2  # noqa: F401
    import restr_d2  # noqa: F401
    from segmentation_core.config import load_config
    from segmentation_core.engine.trainer import Trainer
    from segmentation_core.precision import cpu_bf16_support

    setup_logger(name="restr_d2")
    setup_logger(name="segmentation_core")
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = list(args.opts) + ["MODEL.WEIGHTS", args.weights, "OUTPUT_DIR", args.output]
    cfg32 = load_config(args.config_file, opts)
    cfg16 = load_config(args.config_file, opts + [
        "MODEL.INFERENCE_DTYPE", "bfloat16",
        "MODEL.INFERENCE_DTYPE_ALLOW_EMULATED", str(bool(args.allow_emulated))])
    support = cpu_bf16_support()
    model32 = _build(cfg32)
    model16 = _build(cfg16)  # raises on a CPU without native bf16 unless --allow-emulated
    os.makedirs(args.output, exist_ok=True)

    summary = {"command": "python tools/analysis/bf16_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "cpu": support.describe(), "bf16": "native" if support.native else "emulated",
               "torch": torch.__version__, "threads": torch.get_num_threads(), "datasets": {}}
    for dataset in cfg32.DATASETS.TEST:
        loader = Trainer.build_test_loader(cfg32, dataset)
        evaluators = {dt: Trainer.build_evaluator(cfg32, dataset, os.path.join(args.output, dt, dataset))
                      for dt in ("fp32", "bf16")}
        for ev in evaluators.values():
            ev.reset()
        per_image: List[Dict] = []
        seconds = {"fp32": 0.0, "bf16": 0.0}
        with torch.no_grad():
            for i, inputs in enumerate(loader):
                outs = {}
                for dt, model in (("fp32", model32), ("bf16", model16)):
                    t = time.perf_counter()
                    outs[dt] = model(inputs)
                    seconds[dt] += time.perf_counter() - t
                    evaluators[dt].process(inputs, outs[dt])
                for x, o32, o16 in zip(inputs, outs["fp32"], outs["bf16"]):
                    if "sem_seg" not in o32:
                        continue
                    if o16["sem_seg"].dtype != torch.float32:
                        raise AssertionError(f"bf16 sem_seg came back as {o16['sem_seg'].dtype}, not float32")
                    agree = label_map_agreement(o32["sem_seg"].argmax(0), o16["sem_seg"].argmax(0))
                    per_image.append({"image_id": x.get("image_id", x.get("file_name")), **agree})
                if (i + 1) % 10 == 0:
                    logger.info("%s: %d images (fp32 %.1f s, bf16 %.1f s)", dataset, i + 1,
                                seconds["fp32"], seconds["bf16"])
        results = {dt: ev.evaluate() for dt, ev in evaluators.items()}
        mious = [r["miou"] for r in per_image]
        agreements = [r["pixel_agreement"] for r in per_image]
        worst = min(per_image, key=lambda r: r["miou"]) if per_image else None
        summary["datasets"][dataset] = {
            "images": len(per_image),
            "metrics": metric_differences(results["fp32"], results["bf16"]),
            "per_image_semantic_iou_bf16_vs_fp32": {
                "mean": sum(mious) / len(mious), "min": min(mious), "min_image": worst["image_id"],
                "pixel_agreement_mean": sum(agreements) / len(agreements),
                "pixel_agreement_min": min(agreements),
            } if per_image else None,
            "seconds": seconds,
            "per_image": per_image,
        }
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(format_summary(summary))
    return summary


def format_summary(summary: Dict) -> str:
    lines = [f"{summary['cpu']}; bf16 {summary['bf16']}; torch {summary['torch']}, {summary['threads']} threads"]
    for dataset, d in summary["datasets"].items():
        lines.append(f"\n{dataset}: {d['images']} images; network+post-processing time fp32 "
                     f"{d['seconds']['fp32']:.1f} s, bf16 {d['seconds']['bf16']:.1f} s")
        lines.append(f"{'metric':28s} {'fp32':>9s} {'bf16':>9s} {'bf16-fp32':>10s}")
        for k, m in d["metrics"].items():
            lines.append(f"{k:28s} {m['fp32']:9.3f} {m['bf16']:9.3f} {m['bf16_minus_fp32']:+10.3f}")
        s = d["per_image_semantic_iou_bf16_vs_fp32"]
        if s:
            lines.append(f"per-image semantic mIoU of bf16 vs fp32 labels: mean {s['mean']:.4f}, min "
                         f"{s['min']:.4f} ({s['min_image']}); pixel agreement mean "
                         f"{s['pixel_agreement_mean']:.4f}, min {s['pixel_agreement_min']:.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
