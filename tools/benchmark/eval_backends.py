#!/usr/bin/env python3
"""Speed and agreement of the metric kernels the evaluators can use.

* PQ: ``hotcoco`` and ``panopticapi`` (e.g. the ``panopticapi-lite`` wheel) against a direct
  numpy PQ (``reference_pq``: COCO panoptic protocol: match IoU > 0.5, void and crowd
  handling, per-class averages).
* COCO mask AP: ``faster_coco_eval`` against ``pycocotools``.

Synthetic data, deterministic (``--seed``). A backend that is not installed is reported as
such. Example: ``python tools/benchmark/eval_backends.py --images 50 --size 256``.
"""
import argparse
import json
import os
import tempfile
import time
from collections import defaultdict

import numpy as np
from PIL import Image

from segmentation_core.data.panoptic_ids import id2rgb


OFFSET = 256 * 256 * 256


def _draw(size, ellipses):
    """Paint ``(cy, cx, ry, rx, category)`` ellipses in order (later ones on top)."""
    yy, xx = np.mgrid[:size, :size]
    pan = np.zeros((size, size), np.int64)
    for seg_id, (cy, cx, ry, rx, _) in enumerate(ellipses, start=1):
        pan[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = seg_id
    return pan


def make_panoptic(rng, n_images, size, categories):
    """Random ellipses as ground truth; the prediction moves each a little and sometimes
    changes its class, so that segments match and miss -> [(id map, segments_info)] x 2."""
    gts, preds = [], []
    for _ in range(n_images):
        gt = [(*rng.integers(0, size, 2), *rng.integers(size // 10, size // 3, 2),
               categories[rng.integers(len(categories))]) for _ in range(rng.integers(3, 9))]
        pred = [(cy + rng.integers(-size // 15, size // 15 + 1), cx + rng.integers(-size // 15, size // 15 + 1),
                 ry, rx, cat if rng.random() < 0.8 else categories[rng.integers(len(categories))])
                for cy, cx, ry, rx, cat in gt]
        for ellipses, out, is_gt in ((gt, gts, True), (pred, preds, False)):
            pan = _draw(size, ellipses)
            present = set(np.unique(pan).tolist())
            infos = [{"id": seg_id, "category_id": e[4]["id"], "area": int((pan == seg_id).sum()),
                      "iscrowd": int(is_gt and rng.random() < 0.1)}
                     for seg_id, e in enumerate(ellipses, start=1) if seg_id in present]
            out.append((pan, infos))
    return gts, preds


def reference_pq(gts, preds, categories):
    """PQ/SQ/RQ (fractions) for All / Things / Stuff, directly from the maps."""
    stats = defaultdict(lambda: {"iou": 0.0, "tp": 0, "fp": 0, "fn": 0})
    for (gt, gt_info), (pr, pr_info) in zip(gts, preds):
        gt_segs = {s["id"]: s for s in gt_info}
        pr_segs = {s["id"]: s for s in pr_info}
        inter = defaultdict(int)
        pairs = gt.astype(np.int64) * OFFSET + pr.astype(np.int64)
        for v, c in zip(*np.unique(pairs, return_counts=True)):
            inter[(int(v) // OFFSET, int(v) % OFFSET)] = int(c)
        gt_area = {k: s["area"] for k, s in gt_segs.items()}
        pr_area = {k: s["area"] for k, s in pr_segs.items()}
        gt_matched, pr_matched = set(), set()
        for (g, p), i in inter.items():
            if g not in gt_segs or p not in pr_segs:
                continue
            if gt_segs[g]["iscrowd"] or gt_segs[g]["category_id"] != pr_segs[p]["category_id"]:
                continue
            union = pr_area[p] + gt_area[g] - i - inter.get((0, p), 0)
            iou = i / union
            if iou > 0.5:
                stats[gt_segs[g]["category_id"]]["tp"] += 1
                stats[gt_segs[g]["category_id"]]["iou"] += iou
                gt_matched.add(g)
                pr_matched.add(p)
        crowd_by_cat = {}
        for g, s in gt_segs.items():
            if g in gt_matched:
                continue
            if s["iscrowd"]:
                crowd_by_cat[s["category_id"]] = g
                continue
            stats[s["category_id"]]["fn"] += 1
        for p, s in pr_segs.items():
            if p in pr_matched:
                continue
            void = inter.get((0, p), 0)
            if s["category_id"] in crowd_by_cat:
                void += inter.get((crowd_by_cat[s["category_id"]], p), 0)
            if void / pr_area[p] > 0.5:
                continue
            stats[s["category_id"]]["fp"] += 1
    res = {}
    for name, isthing in (("All", None), ("Things", 1), ("Stuff", 0)):
        pq = sq = rq = 0.0
        n = 0
        for c in categories:
            if isthing is not None and c["isthing"] != isthing:
                continue
            s = stats[c["id"]]
            if s["tp"] + s["fp"] + s["fn"] == 0:
                continue
            n += 1
            pq += s["iou"] / (s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"])
            sq += s["iou"] / s["tp"] if s["tp"] else 0.0
            rq += s["tp"] / (s["tp"] + 0.5 * s["fp"] + 0.5 * s["fn"])
        res[name] = {"pq": pq / max(n, 1), "sq": sq / max(n, 1), "rq": rq / max(n, 1), "n": n}
    return res


def write_panoptic(folder, gts, preds, categories):
    gt_dir, pr_dir = os.path.join(folder, "gt"), os.path.join(folder, "pred")
    os.makedirs(gt_dir)
    os.makedirs(pr_dir)
    images, gt_anns, pr_anns = [], [], []
    for i, ((g, gi), (p, pi)) in enumerate(zip(gts, preds)):
        name = f"{i:06d}.png"
        Image.fromarray(id2rgb(g)).save(os.path.join(gt_dir, name))
        Image.fromarray(id2rgb(p)).save(os.path.join(pr_dir, name))
        images.append({"id": i, "file_name": f"{i:06d}.jpg", "height": g.shape[0], "width": g.shape[1]})
        gt_anns.append({"image_id": i, "file_name": name, "segments_info": gi})
        pr_anns.append({"image_id": i, "file_name": name, "segments_info": [{k: v for k, v in s.items() if k != "iscrowd"} for s in pi]})
    gt_json, pr_json = os.path.join(folder, "gt.json"), os.path.join(folder, "pred.json")
    json.dump({"images": images, "annotations": gt_anns, "categories": categories}, open(gt_json, "w"))
    json.dump({"images": images, "annotations": pr_anns, "categories": categories}, open(pr_json, "w"))
    return gt_json, pr_json, gt_dir, pr_dir


def panoptic_categories(n_things=6, n_stuff=4):
    return [{"id": i + 1, "name": f"c{i}", "isthing": int(i < n_things)} for i in range(n_things + n_stuff)]


def bench_pq(args):
    """{"reference": {...}, backend: {"seconds", "pq", "max_abs_diff"} or {"missing": why}}."""
    from maskformer_d2.evaluation.panoptic_evaluation import pq_compute_fn

    rng = np.random.default_rng(args.seed)
    cats = panoptic_categories()
    gts, preds = make_panoptic(rng, args.images, args.size, cats)
    t = time.perf_counter()
    ref = reference_pq(gts, preds, cats)
    print(f"PQ reference (numpy): {time.perf_counter() - t:.3f}s  PQ={100 * ref['All']['pq']:.4f}")
    results = {"reference": {"pq": ref["All"]["pq"]}}
    with tempfile.TemporaryDirectory() as d:
        files = write_panoptic(d, gts, preds, cats)
        for backend in ("hotcoco", "panopticapi"):
            try:
                fn = pq_compute_fn(backend)
            except ImportError as e:
                print(f"PQ {backend}: not installed ({e})")
                results[backend] = {"missing": str(e)}
                continue
            t = time.perf_counter()
            import contextlib, io
            with contextlib.redirect_stdout(io.StringIO()):
                res = fn(*files)
            dt = time.perf_counter() - t
            diff = max(abs(res[k][m] - ref[k][m]) for k in ("All", "Things", "Stuff") for m in ("pq", "sq", "rq"))
            print(f"PQ {backend}: {dt:.3f}s  PQ={100 * res['All']['pq']:.4f}  max |diff| vs reference = {diff:.2e}")
            results[backend] = {"seconds": dt, "pq": res["All"]["pq"], "max_abs_diff": diff}
    return results


def bench_ap(args):
    """{backend: {"seconds", "stats" (the 12 COCO numbers)} or {"missing": why}}."""
    import pycocotools.mask as mask_util
    from pycocotools.coco import COCO

    from maskformer_d2.evaluation.instance_evaluation import coco_eval_class

    rng = np.random.default_rng(args.seed)
    size = args.size
    images, anns, dets = [], [], []
    yy, xx = np.mgrid[:size, :size]
    for i in range(args.images):
        images.append({"id": i, "height": size, "width": size, "file_name": f"{i}.jpg"})
        for _ in range(rng.integers(2, 8)):
            cy, cx = rng.integers(0, size, 2)
            ry, rx = rng.integers(size // 12, size // 3, 2)
            cat = int(rng.integers(1, 4))
            m = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
            rle = mask_util.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "segmentation": rle,
                         "area": float(m.sum()), "bbox": list(mask_util.toBbox(rle)), "iscrowd": 0})
            for _ in range(2):  # jittered detections, some with the wrong class
                m2 = np.roll(m, tuple(rng.integers(-size // 15, size // 15, 2)), axis=(0, 1))
                rle2 = mask_util.encode(np.asfortranarray(m2))
                rle2["counts"] = rle2["counts"].decode()
                dets.append({"image_id": i, "category_id": cat if rng.random() < 0.8 else int(rng.integers(1, 4)),
                             "segmentation": rle2, "score": float(rng.random())})
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3)]}
    import contextlib, io
    stats = {}
    for backend in ("pycocotools", "faster_coco_eval"):
        try:
            cls = coco_eval_class(backend)
        except ImportError as e:
            print(f"AP {backend}: not installed ({e})")
            stats[backend] = {"missing": str(e)}
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO()
            coco.dataset = json.loads(json.dumps(gt))
            coco.createIndex()
            t = time.perf_counter()
            e = cls(coco, coco.loadRes(json.loads(json.dumps(dets))), "segm")
            e.evaluate(); e.accumulate(); e.summarize()
        stats[backend] = {"seconds": time.perf_counter() - t, "stats": [float(x) for x in e.stats[:12]]}
        print(f"AP {backend}: {stats[backend]['seconds']:.3f}s  AP={100 * e.stats[0]:.4f}")
    measured = [b for b in stats if "stats" in stats[b]]
    if len(measured) == 2:
        diff = np.abs(np.subtract(*[stats[b]["stats"] for b in measured])).max()
        print(f"AP max |stats diff| faster_coco_eval vs pycocotools = {diff:.2e}")
    return stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    results = {"pq": bench_pq(a), "ap": bench_ap(a)}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
