import contextlib
import logging
import time
import weakref

import torch
import torch.distributed as dist
from detectron2.engine import AMPTrainer, DefaultTrainer
from detectron2.utils import comm

from ..checkpoint_policy import weights_strict_from_cfg
from .checkpointer import ResilientCheckpointer
from .data_loader import ResumableTrainStream
from .guard import NonFiniteLossError, find_nonfinite_losses, nonfinite_message
from .rng import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)


def _default_trainer_restores_optimizer():
    return "load_state_dict" in DefaultTrainer.__dict__


class ResilientTrainerMixin:
    """Put before ``DefaultTrainer`` in a Trainer's bases to get:

    * atomic checkpoints, corrupt-checkpoint detection and fallback (:class:`ResilientCheckpointer`);
    * the global RNG states in every checkpoint, restored on ``--resume``;
    * a non-finite-loss guard that runs before the backward pass: by default it raises
      :class:`NonFiniteLossError` naming the loss terms and the iteration (nothing is saved over
      the last good checkpoint); with ``SOLVER.NONFINITE_LOSS: "skip"`` it skips the step;
    * with a Trainer whose ``build_train_loader(cfg, start_iter=...)`` accepts a start
      iteration, a data stream rebuilt at the resumed iteration (see ``ResumableTrainStream``).

    On one process, a run killed and resumed ends with weights bit-identical to an uninterrupted
    run with the same seed. With several processes, rank 0's RNG state is restored on every rank.
    """

    def build_hooks(self):
        # Replace the checkpointer before the PeriodicCheckpointer hook captures it.
        self.checkpointer = ResilientCheckpointer(
            self._trainer.model, self.cfg.OUTPUT_DIR, weights_strict=weights_strict_from_cfg(self.cfg),
            trainer=weakref.proxy(self),
        )
        self.skipped_nonfinite_steps = 0
        return super().build_hooks()

    def state_dict(self):
        state = super().state_dict()
        # detectron2 v0.6's DefaultTrainer leaves the optimizer (and AMP grad scaler) state out
        # of its checkpoints; later detectron2 versions store it under "_trainer".
        state.setdefault("_trainer", self._trainer.state_dict())
        state["rng"] = capture_rng_state()
        stream = getattr(self._trainer.data_loader, "dataset", None)
        if isinstance(stream, ResumableTrainStream):
            state["data_seed"] = stream.seed
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict and not _default_trainer_restores_optimizer():
            self._trainer.load_state_dict(state_dict["_trainer"])
        self._resumed_rng_state = state_dict.get("rng")
        self._resumed_data_seed = state_dict.get("data_seed")
        if self._resumed_rng_state is not None:
            restore_rng_state(self._resumed_rng_state)

    def resume_or_load(self, resume=True):
        super().resume_or_load(resume=resume)
        if self.start_iter > 0:
            self._follow_configured_max_iter()
        if self.start_iter > 0 and getattr(self, "supports_resumable_loader", False):
            loader = self.build_train_loader(self.cfg, start_iter=self.start_iter,
                                             seed=getattr(self, "_resumed_data_seed", None))
            self._trainer.data_loader = loader
            self._trainer._data_loader_iter = iter(loader)
            logger.info(f"data stream resumed at iteration {self.start_iter}")
        if getattr(self, "_resumed_rng_state", None) is not None:
            # Creating a DataLoader iterator draws from the torch RNG: restore it again so the
            # next step sees the state the interrupted run had.
            restore_rng_state(self._resumed_rng_state)

    def _follow_configured_max_iter(self):
        """Resuming with another ``SOLVER.MAX_ITER`` (e.g. extending a finished run): the LR
        schedule is the one of the configured ``MAX_ITER``. From the resumed iteration on, the LR
        is what a run planned for the new length has at that iteration; the checkpoint's
        scheduler state keeps only its position. (detectron2's ``WarmupPolyLR`` stores its
        ``max_iters`` in the checkpoint; past it ``1 - iter / max_iters`` is negative and
        ``math.pow`` fails with "math domain error".) Schedulers built on fvcore's
        ``LRMultiplier`` already take ``MAX_ITER`` from the config."""
        scheduler = getattr(self, "scheduler", None)
        new_max = int(self.cfg.SOLVER.MAX_ITER)
        for attr in ("max_iters", "_max_iter"):
            old_max = getattr(scheduler, attr, None)
            if old_max is None or int(old_max) == new_max:
                continue
            setattr(scheduler, attr, new_max)
            lrs = scheduler._get_closed_form_lr() if hasattr(scheduler, "_get_closed_form_lr") else scheduler.get_lr()
            for group, lr in zip(scheduler.optimizer.param_groups, lrs):
                group["lr"] = lr
            scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]
            logger.warning(
                f"resuming at iteration {self.start_iter} with SOLVER.MAX_ITER={new_max} (the checkpoint's "
                f"schedule ended at {old_max}): the LR schedule now follows MAX_ITER={new_max}, "
                f"lr {scheduler._last_lr[0]:.6g} at this iteration")
            return

    def run_step(self):
        trainer = self._trainer
        trainer.iter = self.iter
        assert trainer.model.training, "model was changed to eval mode during training"
        start = time.perf_counter()
        data = next(trainer._data_loader_iter)
        data_time = time.perf_counter() - start

        amp = isinstance(trainer, AMPTrainer)
        with self._autocast(trainer):
            loss_dict = trainer.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        if self._any_rank_nonfinite(loss_dict):
            return
        losses = sum(loss_dict.values())
        trainer.optimizer.zero_grad()
        if amp:
            trainer.grad_scaler.scale(losses).backward()
        else:
            losses.backward()
        trainer._write_metrics(loss_dict, data_time)
        if amp:
            trainer.grad_scaler.step(trainer.optimizer)
            trainer.grad_scaler.update()
        else:
            trainer.optimizer.step()

    @staticmethod
    def _autocast(trainer):
        if isinstance(trainer, AMPTrainer):
            return torch.autocast("cuda")
        dtype = getattr(trainer, "autocast_dtype", None)  # e.g. bf16 autocast on CPU
        return torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()

    def _any_rank_nonfinite(self, loss_dict):
        """True if the step must be skipped; raises if it must stop. All ranks agree, so a
        skip never leaves one process waiting for the others' gradients."""
        bad = find_nonfinite_losses(loss_dict)
        flag = torch.tensor([float(bool(bad))])
        if comm.get_world_size() > 1:
            dist.all_reduce(flag)
        if flag.item() == 0:
            return False
        mode = self.cfg.SOLVER.get("NONFINITE_LOSS", "raise")
        if mode == "skip":
            self.skipped_nonfinite_steps += 1
            logger.warning(f"skipping iteration {self.iter}: non-finite loss "
                           f"{bad or '(on another process)'}; {self.skipped_nonfinite_steps} "
                           "step(s) skipped so far")
            self._trainer.optimizer.zero_grad()
            return True
        last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else None
        raise NonFiniteLossError(nonfinite_message(bad or {"(another process)": float("nan")},
                                                   self.iter, last))
