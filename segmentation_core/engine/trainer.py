"""One ``Trainer`` for every model family of restr-d2 (MaskFormer / Mask2Former, Segmenter,
ReSTR): mapper, evaluators, optimizer and schedule all come from the config."""
import logging
import os
import weakref
from collections import OrderedDict

import torch
from torch.nn.parallel import DistributedDataParallel

from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
)
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from detectron2.evaluation import verify_results  # noqa: F401  (re-exported for train_net)

from ..resume import build_resumable_train_loader
from .. import precision
from ..safe_checkpoint import SafeDetectionCheckpointer
from ..validation import BadRecordSummaryHook, CheckedDatasetMapper, checked_train_dataset_dicts, wrap_mapper
from ..resume.trainer import ResilientTrainerMixin
from .evaluators import build_evaluators
from .lr_scheduler import build_lr_scheduler
from .mapper_registry import build_dataset_mapper, build_test_mapper
from .optimizer import build_optimizer
from .progress import use_progress_writer
from .tta import SemanticSegmentorWithTTA

__all__ = ["Trainer", "CPUAutocastTrainer", "create_ddp_model"]


def create_ddp_model(model, **kwargs):
    """``DistributedDataParallel`` when the world size is > 1: on the local GPU, or on CPU
    (gloo) without ``device_ids``, which detectron2 v0.6's helper always passes."""
    if comm.get_world_size() == 1:
        return model
    if next(model.parameters()).device.type == "cuda":
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    kwargs.setdefault("broadcast_buffers", False)
    return DistributedDataParallel(model, **kwargs)

logger = logging.getLogger(__name__)


class CPUAutocastTrainer(SimpleTrainer):
    """The training loop of ``SOLVER.AMP.CPU_BF16``: ``Trainer.run_step`` (the resume mixin's)
    runs its forward under ``torch.autocast("cpu", autocast_dtype)``; it is used only inside
    :class:`Trainer`, whose ``run_step`` drives every loop."""

    autocast_dtype = torch.bfloat16  # read by ResilientTrainerMixin.run_step


class Trainer(ResilientTrainerMixin, DefaultTrainer):
    """detectron2 ``DefaultTrainer`` for every family, each choice picked by name from the config:

    * train mapper by ``INPUT.DATASET_MAPPER_NAME`` from ``DATASET_MAPPER_REGISTRY`` (empty:
      detectron2's ``DatasetMapper`` with our checked image reader);
    * evaluators by the test set's ``evaluator_type`` from ``EVALUATOR_REGISTRY`` (filled by the
      plugins), told which outputs the model gives by its meta-architecture's ``eval_tasks``;
    * SGD/AdamW with backbone multiplier, weight-decay rules, full-model gradient clipping;
    * ``WarmupPolyLR``; semantic TTA; AMP on CUDA, optional bf16 autocast on CPU;
    * and from :class:`ResilientTrainerMixin`: atomic checkpoints with optimizer and RNG state,
      exact ``--resume`` (with ``DATALOADER.RESUMABLE``), a non-finite-loss guard.
    """

    supports_resumable_loader = True

    def __init__(self, cfg):
        # DefaultTrainer.__init__, with a DDP wrapper that also works on CPU and a training
        # loop chosen explicitly (AMPTrainer needs CUDA)
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model)
        self._trainer = self._build_loop(cfg, model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeDetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @staticmethod
    def _build_loop(cfg, model, data_loader, optimizer):
        on_cuda = cfg.MODEL.DEVICE != "cpu" and torch.cuda.is_available()
        if cfg.SOLVER.AMP.ENABLED and on_cuda:
            logger.info("Training loop: AMPTrainer (float16 autocast + gradient scaling)")
            return AMPTrainer(model, data_loader, optimizer)
        if cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.AMP.CPU_BF16:
            support = precision.cpu_bf16_support()  # the same test as MODEL.INFERENCE_DTYPE's
            if support.native:
                logger.info("Training loop: bfloat16 autocast on CPU (SOLVER.AMP.CPU_BF16=True; native: %s)",
                            ", ".join(support.features))
            else:
                logger.warning("Training loop: bfloat16 autocast on CPU (SOLVER.AMP.CPU_BF16=True), EMULATED: "
                               "%s, so bf16 runs slower than float32 here (SOLVER.AMP.CPU_BF16 False for "
                               "float32)", support.describe())
            return CPUAutocastTrainer(model, data_loader, optimizer)
        if cfg.SOLVER.AMP.ENABLED:
            logger.info("SOLVER.AMP.ENABLED is ignored on CPU (float32); SOLVER.AMP.CPU_BF16=True enables bf16")
        logger.info("Training loop: SimpleTrainer (float32)")
        return SimpleTrainer(model, data_loader, optimizer)

    @classmethod
    def build_train_loader(cls, cfg, start_iter=0, seed=None):
        mapper = build_dataset_mapper(cfg, True) if cfg.INPUT.DATASET_MAPPER_NAME else None
        if mapper is None:
            logger.info("INPUT.DATASET_MAPPER_NAME is empty: detectron2's DatasetMapper (with our checked image reader)")
            mapper = CheckedDatasetMapper(cfg, True)
        # bad records are skipped and counted, or fatal (DATALOADER.BAD_RECORD_POLICY)
        mapper = wrap_mapper(cfg, mapper, is_train=True)
        dataset = checked_train_dataset_dicts(cfg)
        if not cfg.DATALOADER.RESUMABLE:
            logger.info("DATALOADER.RESUMABLE=False: detectron2's loader (resume is not exact)")
            return build_detection_train_loader(cfg, mapper=mapper, dataset=dataset)
        if seed is None:
            # a random seed is drawn once and stored in every checkpoint, so --resume reuses it
            seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        logger.info(f"resumable data stream: shuffled epochs of the whole training set, seed {seed}"
                    + ("" if cfg.DATALOADER.SAMPLER_TRAIN == "TrainingSampler"
                       and not cfg.DATALOADER.ASPECT_RATIO_GROUPING else
                       f"; DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN} and "
                       "ASPECT_RATIO_GROUPING are not used (set DATALOADER.RESUMABLE False for them)"))
        return build_resumable_train_loader(
            dataset, mapper, total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
            seed=seed, start_iter=start_iter, num_workers=cfg.DATALOADER.NUM_WORKERS,
        )

    def build_hooks(self):
        # logs how many training records were skipped, and why (DATALOADER.BAD_RECORD_POLICY);
        # progress lines at least every 30 s, and more often in short runs
        hooks = use_progress_writer(super().build_hooks(), self.cfg.SOLVER.MAX_ITER)
        return hooks + [BadRecordSummaryHook(period=1000)]

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        # the configured mapper when it maps test sets too (e.g. "referring"); else detectron2's
        # test mapper, reading images as training does (same pixels, named errors)
        mapper = build_test_mapper(cfg) or CheckedDatasetMapper(cfg, False)
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluators(cfg, dataset_name, output_folder)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def test_with_TTA(cls, cfg, model):
        logger.info("Running inference with semantic test-time augmentation ...")
        model = SemanticSegmentorWithTTA(cfg, model)
        evaluators = [
            cls.build_evaluator(cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
            for name in cfg.DATASETS.TEST
        ]
        res = cls.test(cfg, model, evaluators)
        return OrderedDict({k + "_TTA": v for k, v in res.items()})
