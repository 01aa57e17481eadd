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
import time

import cv2

import segmentation_core  # noqa: F401  (first: imports detectron2 without its torch.jit.script warnings)

from detectron2.utils.logger import setup_logger

from predictor import TASKS, VisualizationDemo, is_referring_config
from segmentation_core.config import load_config
from segmentation_core.validation import BadRecordError, image_reader_kwargs, read_image_checked

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
logger = logging.getLogger("restr_d2.demo")


def setup_cfg(args):
    cfg = load_config(args.config_file, args.opts or [])
    if not cfg.MODEL.WEIGHTS:
        # weights that are given must cover the whole model (checked when they load); none at all
        # is allowed for trying the pipeline, and said loudly
        logger.warning("MODEL.WEIGHTS is empty: drawing the predictions of a randomly initialised model")
    return cfg


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
        help="run the network from this ONNX graph (tools/export/export_onnx.py of the same config) in "
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


class InputsFailed(SystemExit):
    """Some inputs could not be processed (the others were): exits with status 1 and the list
    of failures; ``results`` holds what was written, ``failures`` (path, reason) pairs."""

    def __init__(self, results, failures):
        lines = "\n".join(f"  {p}: {reason}" for p, reason in failures)
        super().__init__(f"{len(failures)} input(s) failed:\n{lines}")
        self.results, self.failures = results, failures


def run_images(demo, args, reader_kwargs=None):
    """Visualize every input; one that fails (unreadable image, ...) is logged and listed at the
    end, and the others go on (``InputsFailed``, exit status 1, when any failed)."""
    paths = expand_inputs(args.input)
    texts = args.text or [None]
    results, failures = [], []
    # usage errors (several inputs into one --output file) stop before any work
    outputs = {path: output_paths(path, args.output, len(paths), len(args.text or [])) for path in paths}
    for path in paths:
        try:
            # the reader of training and evaluation: same pixels (16-bit, EXIF), named errors
            image = read_image_checked(path, "BGR", **(reader_kwargs or {}))
            for text, out_path in zip(texts, outputs[path]):
                start = time.time()
                predictions, vis = demo.run_on_image(image, text)
                _write(out_path, vis)
                drawn = demo.drawn_tasks(predictions)
                counts = []
                segments = predictions["panoptic_seg"][1] if "panoptic" in drawn else None
                if segments is not None:
                    counts.append(f"{len(segments)} panoptic segments drawn")
                if "instance" in drawn:
                    counts.append(f"{len(predictions['instances'])} instances drawn")
                notes = getattr(demo, "last_notes", [])
                logger.info(
                    f"{path}{f' [{text!r}]' if text else ''}: "
                    + "".join(f"{c}, " for c in counts)
                    + "".join(f"{n}, " for n in notes)
                    + f"{time.time() - start:.2f}s -> {out_path}"
                )
                results.append((out_path, predictions))
        except (BadRecordError, OSError, RuntimeError, MemoryError) as e:
            # a bad input (unreadable, too large, out of memory) must not stop the others; all are
            # listed at the end. Usage errors (ValueError: --task, --text, ...) stop at once.
            reason = f"{e.detail} [{e.reason}]" if isinstance(e, BadRecordError) else f"{type(e).__name__}: {e}"
            logger.error(f"{path}: {reason}")
            failures.append((path, reason))
    if failures:
        logger.error(f"{len(failures)} of {len(paths)} input(s) failed, {len(results)} visualization(s) written")
        raise InputsFailed(results, failures)
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
    return run_images(demo, args, image_reader_kwargs(cfg))


if __name__ == "__main__":
    main()
