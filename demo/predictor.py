"""``VisualizationDemo``: a predictor plus detectron2's ``Visualizer`` for every restr-d2 model.

Semantic (``sem_seg`` (C, H, W)), panoptic (``panoptic_seg``), instance (``instances``) and
referring (``ref_seg`` via ``restr_d2.engine.ReferringPredictor``) outputs are drawn onto the
input image; instances scoring below ``confidence_threshold`` are dropped before drawing.
"""
import logging

import numpy as np
import torch

from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.engine import DefaultPredictor
from detectron2.structures import BitMasks
from detectron2.utils.visualizer import ColorMode, Visualizer

__all__ = ["VisualizationDemo", "TASKS", "REFERRING_META_ARCHITECTURES", "is_referring_config"]

logger = logging.getLogger(__name__)

TASKS = ("auto", "panoptic", "semantic", "instance")
# meta-architectures whose forward takes an image and a sentence
REFERRING_META_ARCHITECTURES = ("ReSTR",)


def is_referring_config(cfg):
    return cfg.MODEL.META_ARCHITECTURE in REFERRING_META_ARCHITECTURES


def _referring_predictor_class():
    try:
        from restr_d2.engine.predictor import ReferringPredictor
    except ImportError as e:
        raise ImportError(
            "This config is a referring model (MODEL.META_ARCHITECTURE in "
            f"{REFERRING_META_ARCHITECTURES}), which the demo runs through "
            "restr_d2.engine.predictor.ReferringPredictor; importing it failed: " + str(e)
        ) from e
    return ReferringPredictor


def filter_instances(instances, confidence_threshold):
    """Instances with ``scores >= confidence_threshold``."""
    return instances[instances.scores >= confidence_threshold]


def _boxes_for_drawing(instances):
    """Mask-classification models give all-zero ``pred_boxes``; the Visualizer would stack every
    label at (0, 0), so boxes are taken from the masks instead."""
    if instances.has("pred_masks") and len(instances) > 0:
        if not instances.has("pred_boxes") or not instances.pred_boxes.tensor.any():
            instances = instances[:]  # a shallow copy: the caller's Instances stays unchanged
            instances.pred_boxes = BitMasks(instances.pred_masks).get_bounding_boxes()
    return instances


def instance_label_metadata(metadata, num_classes):
    """Metadata whose ``thing_classes`` name every class an instance output can have.

    In the Mask2Former convention ``stuff_classes`` lists all classes (things included) and
    instance inference without panoptic filtering may label an instance with any of them,
    while ``thing_classes`` lists the things only; the Visualizer names instances by
    ``thing_classes``, so that joint list is used when it is the model's label space.
    """
    names = metadata.get("stuff_classes", None)
    things = metadata.get("thing_classes", None)
    if names is None or len(names) != num_classes or (things is not None and len(things) >= len(names)):
        return metadata
    joint = Metadata(name=metadata.name + "__instance_labels")
    fields = {k: v for k, v in metadata.as_dict().items() if k not in ("name", "thing_classes", "thing_colors")}
    joint.set(**fields, thing_classes=list(names))
    if metadata.get("stuff_colors", None) is not None:
        joint.set(thing_colors=list(metadata.stuff_colors))
    return joint


def _draw_notes(vis, notes):
    """Write ``notes`` (one line each) in white on a dark band at the bottom of ``vis``."""
    h, w = vis.height, vis.width
    font_size = max(4.0, min(h / 18, w / (0.62 * max(len(n) for n in notes))))
    for k, note in enumerate(reversed(notes)):
        y = h - (k + 1) * 1.5 * font_size
        vis.ax.text(3, y, note, size=font_size * vis.scale, family="sans-serif", color="white",
                    verticalalignment="top", horizontalalignment="left", zorder=10,
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.7, "edgecolor": "none"})


class VisualizationDemo:
    """``run_on_image(image_bgr, text=None)`` -> ``(predictions, VisImage)``.

    Args:
        cfg: a frozen config of any restr-d2 model.
        confidence_threshold (float): instances with a lower score are not drawn (and are
            removed from the returned predictions).
        task (str): which output to draw when a model gives several: "panoptic", "semantic",
            "instance", or "auto" (panoptic if present, else semantic and instances together,
            like the official Mask2Former demo).
        instance_mode (ColorMode): colouring of the Visualizer.
        onnx_path (str): run the network from this ONNX graph in onnxruntime
            (``segmentation_core.export.ONNXPredictor``, same outputs) instead of PyTorch.
        display_scale (float): the picture is drawn this many times larger than the image
            (detectron2's ``Visualizer(scale=...)``), so that labels on small images are readable;
            the prediction itself is made on the image as given.
    """

    def __init__(self, cfg, *, confidence_threshold=0.5, task="auto", instance_mode=ColorMode.IMAGE,
                 onnx_path=None, display_scale=1.0):
        if task not in TASKS:
            raise ValueError(f"Unknown task {task!r}; choose one of {TASKS}")
        self.cfg = cfg
        self.task = task
        self.confidence_threshold = float(confidence_threshold)
        self.instance_mode = instance_mode
        if not display_scale > 0:
            raise ValueError(f"display_scale must be positive, got {display_scale}")
        self.display_scale = float(display_scale)
        self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused")
        self.instance_metadata = instance_label_metadata(self.metadata, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
        self.referring = is_referring_config(cfg)
        if onnx_path:
            from segmentation_core.export.predictor import ONNXPredictor

            logger.info(f"network in onnxruntime from {onnx_path} (--onnx)")
            self.predictor = ONNXPredictor(onnx_path, cfg)
        elif self.referring:
            self.predictor = _referring_predictor_class()(cfg)
        else:
            self.predictor = DefaultPredictor(cfg)
        self.input_format = cfg.INPUT.FORMAT

    def predict(self, image_bgr, text=None):
        if self.referring:
            if not text:
                raise ValueError(
                    f"{self.cfg.MODEL.META_ARCHITECTURE} segments what a sentence refers to: pass "
                    "the sentence with --text"
                )
            return self.predictor(image_bgr, text)
        if text:
            raise ValueError(
                f"--text is only for referring models ({REFERRING_META_ARCHITECTURES}); "
                f"{self.cfg.MODEL.META_ARCHITECTURE} does not take a sentence"
            )
        predictions = self.predictor(image_bgr)
        self._num_raw_instances = len(predictions["instances"]) if "instances" in predictions else None
        if "instances" in predictions:
            predictions["instances"] = filter_instances(
                predictions["instances"].to("cpu"), self.confidence_threshold
            )
        return predictions

    def notes(self, raw_predictions, predictions):
        """What the demo hides or what is empty, for the log and (shorter) for the picture:
        instances removed by ``confidence_threshold``, an empty referring mask.
        Returns [(log text, picture text)]."""
        notes = []
        if self.referring:
            if not bool(predictions["mask"].any()):
                threshold, highest = self.predictor.mask_threshold, float(predictions["prob"].max())
                notes.append((f"empty mask: no pixel has probability > {threshold:g} (highest {highest:.2f})",
                              f"empty mask (max prob {highest:.2f} <= {threshold:g})"))
        elif "panoptic" in self.drawn_tasks(predictions) and predictions["panoptic_seg"][1] == []:
            test = self.cfg.MODEL.get("MASK_FORMER", {}).get("TEST", {})
            score, overlap = test.get("OBJECT_MASK_THRESHOLD", None), test.get("OVERLAP_THRESHOLD", None)
            notes.append(("no panoptic segment kept" + (
                f" (MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD={score:g}, OVERLAP_THRESHOLD={overlap:g})"
                if score is not None and overlap is not None else ""), "no segment kept"))
        elif "instance" in self.drawn_tasks(predictions) and raw_predictions is not None:
            total, kept = raw_predictions, len(predictions["instances"])
            if kept < total:
                notes.append((f"{total - kept} of {total} instances scored below {self.confidence_threshold:g} "
                              "(--confidence-threshold), not drawn",
                              f"{total - kept}/{total} instances < {self.confidence_threshold:g} hidden"))
        return notes

    def drawn_tasks(self, predictions):
        """Which of "panoptic", "semantic", "instance" ``draw`` shows for ``predictions``."""
        return () if self.referring else self._task_of(predictions)

    def _task_of(self, predictions):
        if self.task != "auto":
            key = {"panoptic": "panoptic_seg", "semantic": "sem_seg", "instance": "instances"}[self.task]
            if key not in predictions:
                raise ValueError(
                    f"--task {self.task}: the model gave no '{key}' (it gave {sorted(predictions)}); "
                    "enable that output in the config (e.g. MODEL.MASK_FORMER.TEST.*_ON)"
                )
            return (self.task,)
        if "panoptic_seg" in predictions:
            return ("panoptic",)
        return tuple(t for t, k in (("semantic", "sem_seg"), ("instance", "instances")) if k in predictions)

    def draw(self, image_bgr, predictions, text=None):
        """Draw ``predictions`` on the (H, W, 3) BGR image; returns a ``VisImage`` (RGB)."""
        image_rgb = image_bgr[:, :, ::-1]
        visualizer = Visualizer(image_rgb, self.metadata, instance_mode=self.instance_mode,
                                scale=self.display_scale)
        if self.display_scale > 1:
            # detectron2 sizes labels from the image (sqrt(h * w) / 90 image pixels, 8 picture
            # pixels on a 128 px image drawn 4x): at least 16 picture pixels when drawn larger
            visualizer._default_font_size = max(visualizer._default_font_size, 16.0 / self.display_scale)
        if self.referring:
            vis = visualizer.draw_binary_mask(
                predictions["mask"].cpu().numpy(), color=(0.0, 1.0, 0.3), edge_color=(0.0, 0.5, 0.1), alpha=0.5
            )
            # the sentence as a title, centred at the top; a glyph is ~0.6 font sizes wide,
            # so the size is capped to keep the whole sentence inside the image
            h, w = image_rgb.shape[:2]
            font_size = max(5.0, min(max(h, w) / 15, w / (0.65 * max(len(text), 1))))
            visualizer.draw_text(
                text, (w / 2, 1), color="white", horizontal_alignment="center", font_size=font_size
            )
            return vis
        vis = visualizer.output
        for task in self._task_of(predictions):
            if task == "panoptic":
                panoptic_seg, segments_info = predictions["panoptic_seg"]
                vis = visualizer.draw_panoptic_seg(panoptic_seg.to("cpu"), segments_info)
            elif task == "semantic":
                vis = visualizer.draw_sem_seg(predictions["sem_seg"].argmax(dim=0).to("cpu"))
            else:
                instances = predictions["instances"].to("cpu")
                visualizer.metadata = self.instance_metadata
                names = self.instance_metadata.get("thing_classes", None)
                if names is not None and len(instances) and int(instances.pred_classes.max()) >= len(names):
                    raise ValueError(
                        f"An instance has class {int(instances.pred_classes.max())}, beyond the "
                        f"{len(names)} thing_classes of "
                        f"'{self.metadata.name}'; is DATASETS.TEST the dataset the model was trained on?"
                    )
                vis = visualizer.draw_instance_predictions(_boxes_for_drawing(instances))
        return vis

    def run_on_image(self, image_bgr, text=None):
        """-> (predictions, VisImage); ``self.last_notes`` says what was filtered or is empty
        (also written at the bottom of the picture)."""
        predictions = self.predict(image_bgr, text)
        notes = self.notes(getattr(self, "_num_raw_instances", None), predictions)
        self.last_notes = [long for long, _ in notes]
        vis = self.draw(image_bgr, predictions, text)
        if notes:
            _draw_notes(vis, [short for _, short in notes])
        return predictions, vis

    def run_on_video(self, video, text=None):
        """Yields the visualized (H, W, 3) BGR frames of an opened ``cv2.VideoCapture``."""
        while video.isOpened():
            ok, frame = video.read()
            if not ok:
                break
            _, vis = self.run_on_image(frame, text)
            yield np.ascontiguousarray(vis.get_image()[:, :, ::-1])

    @torch.no_grad()
    def __call__(self, image_bgr, text=None):
        return self.run_on_image(image_bgr, text)
