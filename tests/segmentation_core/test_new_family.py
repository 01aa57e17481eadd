"""A fifth model family needs no edit of the core: this file alone registers one (config
family, meta-architecture, dataset mapper, evaluator, datasets), then trains it for 2
iterations and evaluates it through ``train_net.py``."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.evaluation import DatasetEvaluator
from detectron2.modeling import META_ARCH_REGISTRY

from segmentation_core.config import CONFIG_FAMILY_REGISTRY, ConfigFamily, build_cfg
from segmentation_core.engine.evaluators import EVALUATOR_REGISTRY, register_evaluator
from segmentation_core.engine.mapper_registry import DATASET_MAPPER_REGISTRY, register_mapper

import train_net

ARCH, MAPPER, EVALUATOR_TYPE = "ToyBrightnessNet", "toy_brightness", "toy_brightness"


class ToyBrightnessConfig(ConfigFamily):
    """The toy family: claims YAMLs whose meta-architecture is ``ToyBrightnessNet``."""

    meta_architectures = (ARCH,)
    num_classes_key = None  # a regression: no class count to check against the datasets

    @staticmethod
    def add_config(cfg):
        cfg.MODEL.TOY = CfgNode({"HIDDEN": 4})


class ToyBrightnessNet(nn.Module):
    """Predicts an image's mean brightness in [0, 1]; training: {"loss_l2"}, inference:
    [{"brightness": tensor ()}]."""

    def __init__(self, cfg):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, cfg.MODEL.TOY.HIDDEN, 3), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cfg.MODEL.TOY.HIDDEN, 1))

    def forward(self, batched_inputs):
        images = torch.stack([x["image"].float() / 255.0 for x in batched_inputs])
        pred = self.net(images).squeeze(1)
        if self.training:
            target = torch.stack([x["brightness"] for x in batched_inputs])
            return {"loss_l2": ((pred - target) ** 2).mean()}
        return [{"brightness": p} for p in pred]


class ToyBrightnessMapper:
    """Reads the image; the target is its mean brightness. Maps the test sets too."""

    maps_test_sets = True

    def __init__(self, cfg, is_train):
        self.is_train = is_train

    def __call__(self, record):
        image = utils.read_image(record["file_name"], format="RGB")
        return dict(record, image=torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
                    brightness=torch.tensor(image.mean() / 255.0, dtype=torch.float32))


class ToyBrightnessEvaluator(DatasetEvaluator):
    """Mean absolute brightness error over the test set."""

    def __init__(self, dataset_name):
        self.dataset_name = dataset_name

    def reset(self):
        self.errors = []

    def process(self, inputs, outputs):
        self.errors += [abs(float(o["brightness"]) - float(i["brightness"])) for i, o in zip(inputs, outputs)]

    def evaluate(self):
        return {"toy_brightness": {"mae": float(np.mean(self.errors)), "count": len(self.errors)}}


def _write_images(root, n, seed):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        path = os.path.join(root, f"{seed}_{i}.png")
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        records.append({"file_name": path, "image_id": i, "height": 24, "width": 32})
    return records


@pytest.fixture
def toy_family(tmp_path):
    """Registers the toy family everywhere the engine looks names up; removes it afterwards."""
    CONFIG_FAMILY_REGISTRY.register(ToyBrightnessConfig)
    META_ARCH_REGISTRY.register(ToyBrightnessNet)
    register_mapper(MAPPER, ToyBrightnessMapper)
    register_evaluator(EVALUATOR_TYPE, lambda cfg, name, out, tasks: [ToyBrightnessEvaluator(name)])
    datasets = {"toy_brightness_train": _write_images(str(tmp_path), 4, 0),
                "toy_brightness_val": _write_images(str(tmp_path), 3, 1)}
    for name, records in datasets.items():
        DatasetCatalog.register(name, lambda records=records: records)
        MetadataCatalog.get(name).set(evaluator_type=EVALUATOR_TYPE)
    yield
    for registry, name in ((CONFIG_FAMILY_REGISTRY, "ToyBrightnessConfig"), (META_ARCH_REGISTRY, ARCH),
                           (DATASET_MAPPER_REGISTRY, MAPPER), (EVALUATOR_REGISTRY, EVALUATOR_TYPE)):
        registry._obj_map.pop(name)
    for name in datasets:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_a_family_registered_from_this_file_trains_and_evaluates_through_train_net(toy_family, tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text("\n".join([
        "MODEL:", f"  META_ARCHITECTURE: {ARCH}", "  DEVICE: cpu", "  TOY:", "    HIDDEN: 3",
        "DATASETS:", "  TRAIN: ('toy_brightness_train',)", "  TEST: ('toy_brightness_val',)",
        "INPUT:", f"  DATASET_MAPPER_NAME: {MAPPER}",
        "SOLVER:", "  IMS_PER_BATCH: 2", "  MAX_ITER: 2", "  BASE_LR: 0.01", "  CHECKPOINT_PERIOD: 100",
        "DATALOADER:", "  NUM_WORKERS: 0",
        "SEED: 0",  # the MAE bound below holds for this initialisation, whatever ran before
        "",
    ]))
    # the toy family's defaults (and only them) came from the registry: MODEL.TOY exists
    assert build_cfg(str(config)).MODEL.TOY.HIDDEN == 3
    out = tmp_path / "out"
    train_net.cli(["--config-file", str(config), "OUTPUT_DIR", str(out)])  # the command line, in-process

    metrics = [json.loads(line) for line in open(out / "metrics.json")]
    assert max(m["iteration"] for m in metrics if "total_loss" in m) == 1  # 2 iterations: 0 and 1
    final = [m for m in metrics if "toy_brightness/mae" in m]
    assert len(final) == 1 and final[0]["toy_brightness/count"] == 3  # every val image, through the toy mapper
    assert 0.0 <= final[0]["toy_brightness/mae"] < 1.0
    weights = torch.load(out / "model_final.pth", weights_only=False)["model"]
    assert weights["net.0.weight"].shape == (3, 3, 3, 3)  # MODEL.TOY.HIDDEN of the YAML

    # --eval-only with the trained weights gives the same figures
    args = train_net.default_argument_parser().parse_args([
        "--config-file", str(config), "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
        "OUTPUT_DIR", str(out)])
    again = train_net.main(args)
    assert again["toy_brightness"]["count"] == 3
    assert again["toy_brightness"]["mae"] == pytest.approx(final[0]["toy_brightness/mae"], abs=1e-6)
