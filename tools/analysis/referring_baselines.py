#!/usr/bin/env python3
"""Trivial baselines of referring segmentation, scored with ``ReferringEvaluator``.

    python tools/analysis/referring_baselines.py --dataset shapes_refcoco_unc_val [--prior-dataset NAME]

For every sentence of ``--dataset`` (one detectron2 record per sentence, see
docs/CONTRACTS.md "Referring"), each baseline ignores the sentence and predicts:

* ``largest_object``: the mask of the largest annotated object of the image (by mask area),
  taken from the REFER ``instances.json`` of the dataset (metadata ``refer_dir``);
* ``whole_image``: every pixel;
* ``most_frequent_category``: the largest object of the category most often referred to in
  ``--prior-dataset`` (default: the ``_train`` split of the same dataset); an image without
  such an object falls back to its largest object.

The ground truth is the referred object's mask at the original resolution, rasterised by the
referring mapper's ``annotations_to_mask`` (what ``gt_mask_orig`` holds at test time).
Prints oIoU / mIoU / Prec@0.5..0.9 per baseline; ``--json`` also writes them to a file.
"""
import argparse
import collections
import json
import logging
import os
from typing import Dict, List, Optional

import numpy as np
import torch


from detectron2.data import DatasetCatalog, MetadataCatalog

import restr_d2  # noqa: F401  (registers the referring datasets)
from restr_d2.data.dataset_mappers.referring_dataset_mapper import annotations_to_mask
from restr_d2.evaluation import ReferringEvaluator

logger = logging.getLogger("referring_baselines")

BASELINES = ("largest_object", "whole_image", "most_frequent_category")


def load_instances(dataset_name: str) -> Dict[int, List[dict]]:
    """image_id -> COCO annotations of every object of the image (REFER ``instances.json``)."""
    meta = MetadataCatalog.get(dataset_name)
    refer_dir = meta.get("refer_dir", None)
    if refer_dir is None:
        raise ValueError(
            f"dataset {dataset_name!r} has no 'refer_dir' metadata; the baselines need the REFER "
            "instances.json of a referring dataset registered through load_refer_json"
        )
    path = os.path.join(refer_dir, "instances.json")
    with open(path) as f:
        instances = json.load(f)
    by_image: Dict[int, List[dict]] = collections.defaultdict(list)
    for ann in instances["annotations"]:
        by_image[ann["image_id"]].append(ann)
    return by_image


def default_prior_dataset(dataset_name: str) -> str:
    """``foo_val`` -> ``foo_train`` when registered, else the dataset itself."""
    base, _, _split = dataset_name.rpartition("_")
    candidate = f"{base}_train"
    if base and candidate in DatasetCatalog.list():
        return candidate
    logger.warning("no %s registered: category prior taken from %s itself", candidate, dataset_name)
    return dataset_name


def most_frequent_category(records: List[dict]) -> int:
    """Contiguous category id referred to by the most sentences (ties: the smallest id)."""
    counts = collections.Counter(r["category_id"] for r in records)
    best = max(counts.values())
    return min(c for c, n in counts.items() if n == best)


class _ObjectMasks:
    """Masks (and areas) of every object of one image, rasterised once."""

    def __init__(self, anns: List[dict], height: int, width: int, file_name: str):
        self.anns = anns
        self.masks = [annotations_to_mask([a], height, width, file_name) for a in anns]
        self.areas = [int(m.sum()) for m in self.masks]

    def largest(self, category_id: Optional[int] = None) -> Optional[np.ndarray]:
        idx = [i for i, a in enumerate(self.anns) if category_id is None or a["category_id"] == category_id]
        if not idx:
            return None
        return self.masks[max(idx, key=lambda i: self.areas[i])]


def run_baselines(dataset_name: str, prior_dataset: Optional[str] = None) -> Dict[str, Dict[str, float]]:
    """``{baseline: referring metrics}`` on ``dataset_name`` (see the module docstring)."""
    records = DatasetCatalog.get(dataset_name)
    instances = load_instances(dataset_name)
    prior_dataset = prior_dataset or default_prior_dataset(dataset_name)
    prior_records = records if prior_dataset == dataset_name else DatasetCatalog.get(prior_dataset)
    # records carry contiguous ids, instances.json the dataset ids
    id_map = MetadataCatalog.get(dataset_name).thing_dataset_id_to_contiguous_id
    contiguous_to_dataset = {v: k for k, v in id_map.items()}
    freq_cat = contiguous_to_dataset[most_frequent_category(prior_records)]
    logger.info("most frequent referred category in %s: dataset id %d", prior_dataset, freq_cat)

    evaluators = {b: ReferringEvaluator(dataset_name, distributed=False) for b in BASELINES}
    for ev in evaluators.values():
        ev.reset()
    cache: Dict[int, _ObjectMasks] = {}
    for r in records:
        h, w = r["height"], r["width"]
        gt = annotations_to_mask(r["annotations"], h, w, r["file_name"])
        if r["image_id"] not in cache:
            cache.clear()  # records of one image are consecutive; keep memory flat
            cache[r["image_id"]] = _ObjectMasks(instances.get(r["image_id"], []), h, w, r["file_name"])
        objs = cache[r["image_id"]]
        empty = np.zeros((h, w), dtype=bool)
        largest = objs.largest()
        largest = empty if largest is None else largest
        of_cat = objs.largest(freq_cat)
        preds = {
            "largest_object": largest,
            "whole_image": np.ones((h, w), dtype=bool),
            "most_frequent_category": largest if of_cat is None else of_cat,
        }
        inp = {"gt_mask_orig": torch.from_numpy(gt), "image_id": r["image_id"],
               "ref_id": r.get("ref_id"), "sent_id": r.get("sent_id")}
        for b, m in preds.items():
            evaluators[b].process([inp], [{"ref_seg": torch.from_numpy(m.astype(np.float32))}])
    return {b: dict(ev.evaluate()["referring"]) for b, ev in evaluators.items()}


def format_table(results: Dict[str, Dict[str, float]]) -> str:
    keys = ["oIoU", "mIoU", "Prec@0.5", "Prec@0.6", "Prec@0.7", "Prec@0.8", "Prec@0.9"]
    lines = ["| baseline | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for b, m in results.items():
        lines.append(f"| {b} | " + " | ".join(f"{m[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="shapes_refcoco_unc_val", help="registered referring dataset")
    p.add_argument("--prior-dataset", default=None,
                   help="dataset whose sentences give the most frequent category (default: <name>_train)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = run_baselines(args.dataset, args.prior_dataset)
    n = int(next(iter(results.values()))["num_samples"])
    print(f"{args.dataset}: {n} sentences")
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
