"""Resuming a finished run with a larger ``SOLVER.MAX_ITER`` trains on (detectron2's
``WarmupPolyLR`` crashed with "math domain error"), and the LR schedule is then the one of the
new ``MAX_ITER``: from the resumed iteration on, the LR equals that of a run planned with the
new length from the start."""
import math

import pytest
from detectron2.projects.deeplab import add_deeplab_config

from segmentation_core.engine.lr_scheduler import build_lr_scheduler
from tests.helpers.toy_training import ToyTrainer, make_cfg


class PolyToyTrainer(ToyTrainer):
    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)


def _cfg(out, max_iter):
    cfg = make_cfg(out, max_iter)
    add_deeplab_config(cfg)
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupPolyLR"
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.POLY_LR_POWER = 0.9
    return cfg


def _train(out, max_iter, resume):
    trainer = PolyToyTrainer(_cfg(out, max_iter))
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return [lr for lr, _ in trainer.storage.history("lr").values()], trainer


def _poly(it, max_iter, base=0.01):
    return base * math.pow(1 - it / max_iter, 0.9)


def test_resume_to_a_larger_max_iter_follows_the_new_schedule(tmp_path):
    first, _ = _train(tmp_path, 6, resume=False)
    assert first == pytest.approx([_poly(i, 6) for i in range(6)])
    extended, trainer = _train(tmp_path, 10, resume=True)
    assert trainer.iter == 10 and (tmp_path / "model_final.pth").exists()
    # iterations 6..9 use the 10-iteration poly schedule
    assert extended == pytest.approx([_poly(i, 10) for i in range(6, 10)])
