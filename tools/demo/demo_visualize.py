#!/usr/bin/env python
"""Visualize a trained model's predictions on the first images of its config's test set.

    python tools/demo/demo_visualize.py --config-file CFG --weights model_final.pth --output DIR

Writes one PNG per image: the input on the left, the prediction on the right (for referring
models, one PNG per sentence, with the sentence as title), each panel drawn at least
``--display-size`` pixels on its longer side (the 128 px shapes images are drawn 4x, so labels
are readable; the model still sees the image as it is). Used by `make demo`.
"""
import argparse
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import tqdm

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

from demo.predictor import VisualizationDemo
from segmentation_core.config import load_config
from segmentation_core.validation import image_reader_kwargs, read_image_checked


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--num-images", type=int, default=6)
    parser.add_argument("--confidence-threshold", type=float, default=0.5)
    parser.add_argument("--display-size", type=int, default=512,
                        help="draw each panel at least this many pixels on its longer side (default 512)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    if args.display_size <= 0:
        parser.error(f"--display-size must be positive, got {args.display_size}")
    setup_logger(name="restr_d2")
    logger = logging.getLogger("restr_d2.demo_visualize")

    cfg = load_config(args.config_file, ["MODEL.WEIGHTS", args.weights] + args.opts)
    demo = VisualizationDemo(cfg, confidence_threshold=args.confidence_threshold)
    records = DatasetCatalog.get(cfg.DATASETS.TEST[0])
    if demo.referring:  # a few sentences for each of the first images
        by_image = {}
        for r in records:
            by_image.setdefault(r["file_name"], []).append(r)
        records = [r for rs in list(by_image.values())[: args.num_images] for r in rs[:2]]
    else:
        records = records[: args.num_images]

    os.makedirs(args.output, exist_ok=True)
    for i, record in enumerate(tqdm.tqdm(records, desc="visualizing")):
        image = read_image_checked(record["file_name"], "BGR", **image_reader_kwargs(cfg))  # as training reads it
        text = record.get("sentence") if demo.referring else None
        # integer scale: every image pixel becomes a whole block of picture pixels
        demo.display_scale = float(max(1, round(args.display_size / max(image.shape[:2]))))
        _, vis = demo(image, text)
        drawn = vis.get_image()[:, :, ::-1]
        scale = int(demo.display_scale)
        shown = image.repeat(scale, axis=0).repeat(scale, axis=1)
        # matplotlib's canvas may be a pixel off the scaled size: crop, or repeat the last row/column
        shown = np.pad(shown[: drawn.shape[0], : drawn.shape[1]],
                       ((0, max(0, drawn.shape[0] - shown.shape[0])), (0, max(0, drawn.shape[1] - shown.shape[1])), (0, 0)),
                       mode="edge")
        panel = np.concatenate([shown, drawn], axis=1)
        stem = Path(record["file_name"]).stem
        name = f"{i:02d}_{stem}.png" if text is None else f"{i:02d}_{stem}_{record.get('sent_id', i)}.png"
        cv2.imwrite(os.path.join(args.output, name), panel)
    logger.info(f"wrote {len(records)} pictures to {args.output}")


if __name__ == "__main__":
    main()
