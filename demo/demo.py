#!/usr/bin/env python3
"""Visualize restr-d2 predictions on images or a video.

    python demo/demo.py --config-file configs/shapes/mask2former_R18_panoptic.yaml \\
        --input "imgs/*.jpg" --output out/ --opts MODEL.WEIGHTS model.pth
    python demo/demo.py --config-file configs/shapes/restr_shapes.yaml --input img.jpg \\
        --text "the red circle" --output out/ --opts MODEL.WEIGHTS model.pth
    python demo/demo.py --config-file ... --video-input clip.mp4 --output out.mp4
    python demo/demo.py --config-file CFG --onnx model.onnx --input img.jpg --output out/   # onnxruntime

``--input`` takes files, glob patterns and folders. Each image is written as
``<output>/<stem>.png`` (``--output`` may also be one ``.png``/``.jpg`` file for one image);
a referring model writes ``<stem>_<k>.png`` for the k-th of several ``--text`` sentences.
"""
import argparse
import glob
import logging
import os
import sys
import time

_DEMO_DIR = os.path.dirname(os.path.abspath(__file__))
# the repo root (for train_net's config builder) and this folder (predictor.py), as
# detectron2's own demo does when run as a script
for _p in (os.path.dirname(_DEMO_DIR), _DEMO_DIR):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import cv2  # noqa: E402

from detectron2.data.detection_utils import read_image  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from predictor import TASKS, VisualizationDemo, is_referring_config  # noqa: E402
from train_net import load_config  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
logger = logging.getLogger("restr_d2.demo")


def setup_cfg(args):
    return load_config(args.config_file, args.opts or [])


def get_parser():
    parser = argparse.ArgumentParser(description="restr-d2 demo: visualized predictions")
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to a config file")
    parser.add_argument("--input", nargs="+", help="image files, glob patterns or folders")
    parser.add_argument("--video-input", help="path to a video file")
    parser.add_argument(
        "--output", required=True,
        help="folder for the visualized images (or one image file for a single input); a video "
             "file for --video-input",
    )
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5,
        help="instances scoring below this are not drawn",
    )
    parser.add_argument(
        "--text", action="append", default=None,
        help="referring models: the sentence to segment (repeat for several)",
    )
    parser.add_argument(
        "--task", choices=TASKS, default="auto",
        help="which output to draw when the model gives several (auto: panoptic if present, "
             "else semantic + instances)",
    )
    parser.add_argument(
        "--onnx", metavar="MODEL.onnx", default=None,
        help="run the network from this ONNX graph (tools/export_onnx.py of the same config) in "
             "onnxruntime instead of PyTorch; MODEL.WEIGHTS is then not read",
    )
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs",
    )
    return parser


def expand_inputs(patterns):
    """Files, globs and folders -> sorted list of image paths; an empty match is an error."""
    paths = []
    for p in patterns:
        if os.path.isdir(p):
            found = sorted(
                os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(p):
            found = [p]
        else:
            found = sorted(glob.glob(os.path.expanduser(p)))
        if not found:
            raise FileNotFoundError(f"--input {p!r} matches no image file")
        paths.extend(found)
    return paths


def output_paths(input_path, output, num_inputs, num_texts):
    """Where the visualization(s) of ``input_path`` go (one per sentence for referring)."""
    if output.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(output):
        if num_inputs != 1 or num_texts > 1:
            raise ValueError(
                f"--output {output!r} is a single file, but there are {num_inputs} inputs x "
                f"{max(num_texts, 1)} sentences; give a folder instead"
            )
        return [output]
    stem = os.path.splitext(os.path.basename(input_path))[0]
    if num_texts > 1:
        return [os.path.join(output, f"{stem}_{k}.png") for k in range(num_texts)]
    return [os.path.join(output, f"{stem}.png")]


def _write(path, vis_image):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, vis_image.get_image()[:, :, ::-1]):
        raise OSError(f"Could not write {path!r}")


def run_images(demo, args):
    paths = expand_inputs(args.input)
    texts = args.text or [None]
    results = []
    for path in paths:
        image = read_image(path, format="BGR")
        for text, out_path in zip(texts, output_paths(path, args.output, len(paths), len(args.text or []))):
            start = time.time()
            predictions, vis = demo.run_on_image(image, text)
            _write(out_path, vis)
            n_inst = len(predictions["instances"]) if "instances" in predictions else None
            logger.info(
                f"{path}{f' [{text!r}]' if text else ''}: "
                + (f"{n_inst} instances, " if n_inst is not None else "")
                + f"{time.time() - start:.2f}s -> {out_path}"
            )
            results.append((out_path, predictions))
    return results


def run_video(demo, args):
    if args.text is not None and len(args.text) > 1:
        raise ValueError("--video-input takes one --text sentence")
    video = cv2.VideoCapture(args.video_input)
    if not video.isOpened():
        raise FileNotFoundError(f"Cannot open --video-input {args.video_input!r}")
    width, height = int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = video.get(cv2.CAP_PROP_FPS) or 25.0
    out = args.output
    if os.path.isdir(out) or not os.path.splitext(out)[1]:
        out = os.path.join(out, os.path.splitext(os.path.basename(args.video_input))[0] + ".mp4")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), True)
    if not writer.isOpened():
        raise OSError(f"Cannot write video {out!r} (mp4v codec)")
    n = 0
    try:
        for frame in demo.run_on_video(video, args.text[0] if args.text else None):
            writer.write(frame)
            n += 1
    finally:
        video.release()
        writer.release()
    logger.info(f"{args.video_input}: {n} frames -> {out}")
    return out, n


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="restr_d2.demo")
    setup_logger(name="predictor")
    if (args.input is None) == (args.video_input is None):
        raise ValueError("Give exactly one of --input and --video-input")
    cfg = setup_cfg(args)
    if args.text and not is_referring_config(cfg):
        raise ValueError(
            f"--text is only for referring models; {cfg.MODEL.META_ARCHITECTURE} does not take a sentence"
        )
    if is_referring_config(cfg) and not args.text:
        raise ValueError(f"{cfg.MODEL.META_ARCHITECTURE} is a referring model: give the sentence with --text")
    demo = VisualizationDemo(cfg, confidence_threshold=args.confidence_threshold, task=args.task,
                             onnx_path=args.onnx)
    if args.video_input:
        return run_video(demo, args)
    return run_images(demo, args)


if __name__ == "__main__":
    main()
