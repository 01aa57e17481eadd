"""One image reader for every path: an image the training reader accepts gives the same
pixels in evaluation (the test loader of ``train_net``), in the demo and through
``read_image_checked`` for predictors; an unreadable one is an error naming the file."""
import os

import numpy as np
import pytest
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog

from segmentation_core.config import build_cfg
from segmentation_core.engine.trainer import Trainer
from segmentation_core.validation import ImageReadError, read_image_checked
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
SEGMENTER = os.path.join(REPO, "configs", "shapes", "segmenter_mask.yaml")


def _sixteen_bit_png(path, h=20, w=24):
    values = np.linspace(1000, 60000, h * w).reshape(h, w).astype(np.uint16)
    Image.fromarray(values).save(path)  # PIL mode I;16
    assert Image.open(path).mode.startswith("I;16")
    return path


@pytest.fixture
def one_image_dataset(request):
    names = []

    def register(file_name, h, w):
        name = f"_one_reader_{request.node.name}_{len(names)}"
        DatasetCatalog.register(name, lambda: [{"file_name": str(file_name), "image_id": 0, "height": h, "width": w}])
        MetadataCatalog.get(name).set(evaluator_type="sem_seg", stuff_classes=["a"], ignore_label=255)
        names.append(name)
        return name

    yield register
    for n in names:
        DatasetCatalog.remove(n)
        MetadataCatalog.remove(n)


def _test_loader_image(name):
    cfg = build_cfg(SEGMENTER, ["INPUT.MIN_SIZE_TEST", "0", "DATASETS.TEST", f"('{name}',)"])
    loader = Trainer.build_test_loader(cfg, name)
    [batch] = list(loader)
    return cfg, batch[0]["image"].permute(1, 2, 0).numpy()


def test_sixteen_bit_png_same_pixels_in_evaluation_as_in_training(tmp_path, one_image_dataset):
    path = _sixteen_bit_png(tmp_path / "gray16.png")
    cfg, image = _test_loader_image(one_image_dataset(path, 20, 24))
    expected = read_image_checked(str(path), cfg.INPUT.FORMAT)  # what the training mappers read
    assert expected.max() < 250  # scaled to 8 bits, not saturated
    np.testing.assert_array_equal(image, expected)


def test_corrupt_image_at_evaluation_names_the_file(tmp_path, one_image_dataset):
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg.*not an image PIL can identify"):
        _test_loader_image(one_image_dataset(bad, 20, 24))
