"""Cityscapes: detectron2 registers ``cityscapes_fine_{sem_seg,instance_seg}_{train,val,test}``
and ``cityscapes_fine_panoptic_{train,val}`` itself; here they only get the missing-folder
error that names ``DETECTRON2_DATASETS``."""
from detectron2.data import DatasetCatalog, MetadataCatalog

from .common import wrap_builtin_loader

_HINT = (
    "see datasets/README.md for the Cityscapes layout (cityscapesscripts' "
    "createTrainIdLabelImgs.py / createPanopticImgs.py make the derived labels)"
)


def wrap_cityscapes():
    for name in DatasetCatalog.list():
        if not name.startswith("cityscapes_fine_"):
            continue
        meta = MetadataCatalog.get(name)
        if name.startswith("cityscapes_fine_panoptic_"):
            required = [meta.image_root, meta.panoptic_root, meta.panoptic_json]
        else:
            required = [meta.image_dir, meta.gt_dir]
        wrap_builtin_loader(name, required, hint=_HINT)


wrap_cityscapes()
