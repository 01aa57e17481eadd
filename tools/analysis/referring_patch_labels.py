#!/usr/bin/env python3
"""How coarse ReSTR's patch labels are on a referring dataset, for a choice of patch size.

    python tools/analysis/referring_patch_labels.py --config-file configs/shapes/restr_shapes.yaml \\
        --patch-sizes 16 8 [--dataset NAME] [--opts KEY VALUE ...]

For every training sentence the GT mask is built as the training mapper builds it (resize and
pad to ``INPUT.IMAGE_SIZE``, no flip) and split into P x P patches. Reported per patch size:

* the median referred-object area in patches;
* the share of sentences whose object fills no patch to 50 % (only partly covered patches);
* the *label precision*: object pixels / pixels of the positive patches, where a patch is
  positive as in training (``patch_labels``: fg pixel count > ``MODEL.RESTR.PATCH_LABEL_THRESHOLD``,
  i.e. any object pixel at the official 0.8). Low precision means the patch loss and the
  adaptive classifier are taught mostly background.

Use it to pick ``MODEL.VIT.PATCH_SIZE`` for small images or small objects.
"""
import argparse


import numpy as np
import torch
from detectron2.data import DatasetCatalog

from restr_d2.data.dataset_mappers.referring_dataset_mapper import ReferringDatasetMapper
from restr_d2.modeling.restr.criterion import patch_labels
from segmentation_core.config import load_config


def patch_statistics(masks, patch_size: int, threshold: float):
    """``masks``: list of (H, W) binary tensors (H, W multiples of ``patch_size``)."""
    areas, no_half, precision = [], 0, []
    for m in masks:
        m = m.float()[None, None]
        P = patch_size
        cover = m.reshape(1, 1, m.shape[-2] // P, P, m.shape[-1] // P, P).mean(dim=(3, 5))
        areas.append(m.sum().item() / P ** 2)
        no_half += int(not bool((cover >= 0.5).any()))
        pos = patch_labels(m, P, threshold)
        if pos.sum() > 0:
            precision.append(m.sum().item() / (pos.sum().item() * P ** 2))
    n = len(masks)
    return {
        "sentences": n,
        "median_area_patches": float(np.median(areas)),
        "no_half_covered_patch_pct": 100.0 * no_half / max(n, 1),
        "label_precision_pct": 100.0 * float(np.mean(precision)) if precision else float("nan"),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-file", required=True)
    ap.add_argument("--dataset", default=None, help="default: the first of DATASETS.TRAIN")
    ap.add_argument("--patch-sizes", type=int, nargs="+", default=[16, 8])
    ap.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    args = ap.parse_args(argv)
    cfg = load_config(args.config_file, args.opts)
    name = args.dataset or cfg.DATASETS.TRAIN[0]
    size = int(cfg.INPUT.IMAGE_SIZE)
    mapper = ReferringDatasetMapper(False, image_size=size, image_format=cfg.INPUT.FORMAT)
    masks = []
    for record in DatasetCatalog.get(name):
        if not record.get("annotations"):
            raise ValueError(f"{name}: record {record.get('file_name')} has no annotations; "
                             "patch statistics need the referred objects' masks")
        masks.append(mapper(record)["gt_mask"])  # (S, S), resized and padded as in training
    thr = float(cfg.MODEL.RESTR.PATCH_LABEL_THRESHOLD)
    print(f"{name}: {len(masks)} sentences at {size}x{size}, patch-label threshold {thr}")
    print("| patch | grid | median object area (patches) | no patch >= 50 % covered | label precision |")
    print("|---|---|---|---|---|")
    results = {}
    for p in args.patch_sizes:
        if size % p:
            raise ValueError(f"INPUT.IMAGE_SIZE {size} is not a multiple of the patch size {p}")
        r = patch_statistics(masks, p, thr)
        results[p] = r
        print(f"| {p} | {size // p}x{size // p} | {r['median_area_patches']:.2f} | "
              f"{r['no_half_covered_patch_pct']:.1f} % | {r['label_precision_pct']:.1f} % |")
    return results


if __name__ == "__main__":
    main()
