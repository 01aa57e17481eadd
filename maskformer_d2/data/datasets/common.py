"""Helpers shared by the dataset registrations.

Registration happens at import and never touches the disk: a dataset whose folder is absent
is still registered, and loading it (``DatasetCatalog.get``) raises a ``FileNotFoundError``
that names the missing path, ``DETECTRON2_DATASETS`` and the script that prepares it.
"""
import json
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.file_io import PathManager

logger = logging.getLogger(__name__)

__all__ = [
    "datasets_root",
    "require_paths",
    "register_lazily",
    "wrap_builtin_loader",
    "load_panoptic_json_with_sem_seg",
]


def datasets_root():
    """The folder holding all datasets: ``$DETECTRON2_DATASETS`` or ``./datasets``."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def require_paths(dataset_name, paths, hint=""):
    """Raise ``FileNotFoundError`` naming every missing path in ``paths``."""
    missing = [p for p in paths if not PathManager.exists(p)]
    if missing:
        env = os.getenv("DETECTRON2_DATASETS")
        env_txt = f"DETECTRON2_DATASETS={env!r}" if env else "DETECTRON2_DATASETS is not set, so the root is './datasets'"
        raise FileNotFoundError(
            f"Dataset '{dataset_name}': missing {', '.join(repr(p) for p in missing)} "
            f"({env_txt}, cwd={os.getcwd()!r}). Point DETECTRON2_DATASETS at the folder that holds "
            f"the datasets" + (f"; {hint}" if hint else "") + "."
        )


def register_lazily(name, loader, required, hint="", **metadata):
    """Register ``name``: ``loader()`` runs on first use, after checking ``required`` paths."""

    def _load():
        require_paths(name, required, hint)
        return loader()

    DatasetCatalog.register(name, _load)
    MetadataCatalog.get(name).set(**metadata)


def wrap_builtin_loader(name, required, hint=""):
    """Give a dataset that detectron2 registered itself the same missing-folder error."""
    if name not in DatasetCatalog.list():
        raise KeyError(f"detectron2 did not register '{name}'; is detectron2 >= 0.6 installed?")
    original = DatasetCatalog[name]  # the registered callable, not its result
    if getattr(original, "_restr_d2_checked", False):
        return

    def _load():
        require_paths(name, required, hint)
        return original()

    _load._restr_d2_checked = True
    DatasetCatalog.remove(name)
    DatasetCatalog.register(name, _load)


def load_panoptic_json_with_sem_seg(json_file, image_dir, gt_dir, semseg_dir, meta, image_ext=".jpg"):
    """COCO-format panoptic annotations -> detectron2 dicts with a semantic label file too.

    Args:
        json_file: panoptic json (``annotations`` with ``file_name`` and ``segments_info``).
        image_dir, gt_dir, semseg_dir: folders of the images, panoptic PNGs, semantic PNGs.
        meta: dict with ``thing_dataset_id_to_contiguous_id`` and
            ``stuff_dataset_id_to_contiguous_id``; dataset ids are mapped to contiguous ids.

    Returns:
        list[dict] with ``file_name``, ``image_id``, ``pan_seg_file_name``,
        ``sem_seg_file_name``, ``segments_info`` (``category_id`` contiguous, ``isthing``).
    """
    things = meta["thing_dataset_id_to_contiguous_id"]
    stuff = meta["stuff_dataset_id_to_contiguous_id"]
    with PathManager.open(json_file) as f:
        json_info = json.load(f)
    sizes = {img["id"]: (img.get("height"), img.get("width")) for img in json_info.get("images", [])}

    ret = []
    for ann in json_info["annotations"]:
        image_id = ann["image_id"]
        stem = os.path.splitext(ann["file_name"])[0]
        segments_info = []
        for seg in ann["segments_info"]:
            seg = dict(seg)
            cat = seg["category_id"]
            if cat in things:
                seg["category_id"], seg["isthing"] = things[cat], True
            elif cat in stuff:
                seg["category_id"], seg["isthing"] = stuff[cat], False
            else:
                raise ValueError(
                    f"{json_file}: image {image_id} has a segment of category {cat}, which the "
                    f"dataset metadata does not list"
                )
            segments_info.append(seg)
        record = {
            "file_name": os.path.join(image_dir, stem + image_ext),
            "image_id": image_id,
            "pan_seg_file_name": os.path.join(gt_dir, ann["file_name"]),
            "sem_seg_file_name": os.path.join(semseg_dir, ann["file_name"]),
            "segments_info": segments_info,
        }
        h, w = sizes.get(image_id, (None, None))
        if h is not None and w is not None:
            record["height"], record["width"] = h, w
        ret.append(record)
    if not ret:
        raise ValueError(f"{json_file} lists no annotated images")
    for key in ("file_name", "pan_seg_file_name", "sem_seg_file_name"):
        if not PathManager.isfile(ret[0][key]):
            raise FileNotFoundError(f"{json_file} refers to {ret[0][key]!r} ({key}), which does not exist")
    return ret
