"""A tiny detectron2 DefaultTrainer with the resilience mixin, used by the reliability tests.

Run as a script: ``python toy_training.py OUTPUT_DIR MAX_ITER [--resume] [--sleep S]
[--nan-at I] [--nonfinite raise|skip]``. Its model uses dropout (torch RNG) and its mapper random
noise (NumPy RNG), so an inexact resume changes the final weights.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from detectron2.config import get_cfg  # noqa: E402
from detectron2.engine import DefaultTrainer  # noqa: E402

from segmentation_core.resume import build_resumable_train_loader  # noqa: E402
from segmentation_core.resume.trainer import ResilientTrainerMixin  # noqa: E402


class ToyModel(nn.Module):
    def __init__(self, nan_at=-1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
        self.nan_at = nan_at
        self.calls = 0

    def forward(self, batch):
        x = torch.stack([d["x"] for d in batch])
        y = torch.stack([d["y"] for d in batch])
        loss = ((self.net(x).squeeze(1) - y) ** 2).mean()
        self.calls += 1
        if self.calls - 1 == self.nan_at:
            loss = loss * float("nan")
        return {"loss_mse": loss, "loss_l1": self.net[0].weight.abs().mean() * 0.01}


def make_dataset(n=37):
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 8, generator=g)
    return [{"x": x, "y": x.sum()} for x in xs]


def mapper(record):
    noise = torch.from_numpy(np.random.normal(0, 0.1, size=8).astype(np.float32))
    return {"x": record["x"] + noise, "y": record["y"]}


class ToyTrainer(ResilientTrainerMixin, DefaultTrainer):
    supports_resumable_loader = True
    nan_at = -1

    @classmethod
    def build_model(cls, cfg):
        return ToyModel(cls.nan_at)

    @classmethod
    def build_train_loader(cls, cfg, start_iter=0, seed=None):
        return build_resumable_train_loader(make_dataset(), mapper,
                                            total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                                            seed=cfg.SEED if seed is None else seed,
                                            start_iter=start_iter,
                                            num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        return {}


def make_cfg(output_dir, max_iter, nonfinite="raise", workers=0):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.MODEL.DEVICE = "cpu"
    cfg.SEED = 7
    cfg.SOLVER.IMS_PER_BATCH = 4
    cfg.SOLVER.BASE_LR = 0.01
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = (max_iter // 2,)
    cfg.SOLVER.WARMUP_ITERS = 3
    cfg.SOLVER.CHECKPOINT_PERIOD = 5
    cfg.SOLVER.NONFINITE_LOSS = nonfinite
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATASETS.TEST = ()
    cfg.TEST.EVAL_PERIOD = 0
    return cfg


def main():
    p = argparse.ArgumentParser()
    p.add_argument("output_dir")
    p.add_argument("max_iter", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds per iteration")
    p.add_argument("--nan-at", type=int, default=-1)
    p.add_argument("--nonfinite", default="raise")
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(123)
    np.random.seed(123)
    cfg = make_cfg(args.output_dir, args.max_iter, args.nonfinite, args.workers)
    ToyTrainer.nan_at = args.nan_at
    trainer = ToyTrainer(cfg)
    if args.sleep:
        from detectron2.engine import HookBase

        class Sleep(HookBase):
            def after_step(self):
                time.sleep(args.sleep)

        trainer.register_hooks([Sleep()])
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    torch.save(trainer.model.state_dict(), Path(args.output_dir) / "final_weights.pt")
    print(f"skipped={trainer.skipped_nonfinite_steps}")


if __name__ == "__main__":
    main()
