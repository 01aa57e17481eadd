"""train_net.py end to end on a tiny ADE20K-layout fixture: 2 CPU processes (gloo) through the
launcher, evaluator gathering, --eval-only with semantic TTA; and the training components the
config selects (mapper, optimizer, TTA sizes), checked on the objects themselves."""
import json
import os
import subprocess
import sys

import numpy as np
import torch

from tests.helpers.dataset_files import save_jpg, save_png
from tests.helpers.evaluation import saved_sem_seg_evaluation
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
CONFIG = os.path.join(REPO, "configs", "shapes", "semantic_fpn_R18_tiny.yaml")


def _ade_fixture(root, n_train=4, n_val=2, size=64):
    base = os.path.join(root, "ADEChallengeData2016")
    for split, n in (("training", n_train), ("validation", n_val)):
        for i in range(n):
            save_jpg(os.path.join(base, "images", split, f"ADE_{split}_{i}.jpg"), size, size, seed=i)
            lab = np.zeros((size, size), np.uint8)
            # a different split per image, so an evaluation over one image differs from one over all
            lab[:, size // (2 + i):] = 1
            lab[: size // 4] = 255
            save_png(os.path.join(base, "annotations_detectron2", split, f"ADE_{split}_{i}.png"), lab)


def _opts(out_dir):
    return [
        "DATASETS.TRAIN", "('ade20k_sem_seg_train',)", "DATASETS.TEST", "('ade20k_sem_seg_val',)",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "150", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.CHECKPOINT_PERIOD", "1000", "OUTPUT_DIR", out_dir,
    ]


def _run(args, root, timeout=240):
    env = dict(os.environ, DETECTRON2_DATASETS=root, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    p = subprocess.run([sys.executable, os.path.join(REPO, "train_net.py")] + args, cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    return p.stdout + p.stderr


def _evaluation(output_dir, folder="inference"):
    return saved_sem_seg_evaluation(output_dir, "ade20k_sem_seg_val", folder)


def test_train_two_processes_then_eval_only(tmp_path):
    root = str(tmp_path / "data")
    _ade_fixture(root)
    out = str(tmp_path / "out")
    _run(["--config-file", CONFIG, "--num-gpus", "2"] + _opts(out), root)
    # two ranks ran: detectron2 gives every rank but the first its own log file
    assert os.path.isfile(os.path.join(out, "log.txt")) and os.path.isfile(os.path.join(out, "log.txt.rank1"))
    metrics = [json.loads(line) for line in open(os.path.join(out, "metrics.json"))]
    final = [m for m in metrics if "sem_seg/mIoU" in m]
    assert final, metrics
    assert 0.0 <= final[-1]["sem_seg/mIoU"] <= 100.0
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    two_ranks = _evaluation(out)

    evaluated = str(tmp_path / "eval")
    _run(["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"),
          "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)", "TEST.AUG.MAX_SIZE", "128"]
         + _opts(evaluated), root)
    # the 2-rank evaluation gathered both validation images: one process over both gives the same
    assert _evaluation(evaluated) == two_ranks
    assert final[-1]["sem_seg/mIoU"] == two_ranks["mIoU"]
    with_tta = _evaluation(evaluated, "inference_TTA")
    assert 0.0 <= with_tta["mIoU"] <= 100.0


def test_the_config_selects_mapper_optimizer_and_tta_sizes():
    """What the run above configures, on the objects train_net builds from the same config."""
    from detectron2.modeling import build_model

    from segmentation_core.config import build_cfg
    from segmentation_core.data.dataset_mappers.mask_former_semantic_dataset_mapper import (
        MaskFormerSemanticDatasetMapper,
    )
    from segmentation_core.engine.mapper_registry import build_dataset_mapper
    from segmentation_core.engine.trainer import Trainer
    from segmentation_core.engine.tta import SemanticSegmentorWithTTA

    cfg = build_cfg(CONFIG, ["TEST.AUG.MIN_SIZES", "(48, 64)", "TEST.AUG.MAX_SIZE", "128"])
    assert isinstance(build_dataset_mapper(cfg, True), MaskFormerSemanticDatasetMapper)
    model = build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "full_model"
    assert type(optimizer).__name__ == "FullModelClippedAdamW"
    backbone = {id(p) for p in model.backbone.parameters()}
    lrs = {(id(p) in backbone, g["lr"]) for g in optimizer.param_groups for p in g["params"]}
    assert lrs == {(True, cfg.SOLVER.BASE_LR * 0.1), (False, cfg.SOLVER.BASE_LR)}
    assert cfg.SOLVER.BACKBONE_MULTIPLIER == 0.1
    tta = SemanticSegmentorWithTTA(cfg, model)
    assert list(tta.tta_mapper.min_sizes) == [48, 64] and tta.tta_mapper.max_size == 128
