#!/usr/bin/env python3
"""Train / evaluate any restr-d2 model (MaskFormer, Mask2Former, Segmenter, ReSTR).

    python train_net.py --config-file configs/.../x.yaml [--num-gpus N] [OPTS ...]
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS model.pth
    python train_net.py --config-file ... --resume

Without GPUs, ``--num-gpus N`` starts N CPU processes joined by gloo.
"""
import logging
import os

import torch

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.projects.deeplab import add_deeplab_config
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import maskformer_d2  # noqa: F401  (registers models, datasets, mappers)
import restr_d2  # noqa: F401
from d2_common.config_checks import (
    check_config,
    load_weights_checked,
    merge_from_file_checked,
    merge_from_list_checked,
)
from d2_common.engine import add_engine_config, launch
from d2_common.resume import ResilientCheckpointer
from d2_common.safe_yaml import make_cfg_safe
from d2_common.engine.trainer import Trainer
from d2_common.validation import add_validation_config

logger = logging.getLogger("restr_d2.train_net")


def build_cfg():
    """A config with the keys of every model family; its YAML loading never runs Python tags
    (a ``SafeCfgNode``: ``cfg.merge_from_file`` is safe)."""
    cfg = get_cfg()
    add_deeplab_config(cfg)
    maskformer_d2.add_maskformer2_config(cfg)
    restr_d2.add_segmenter_config(cfg)
    restr_d2.add_restr_config(cfg)
    add_engine_config(cfg)
    add_validation_config(cfg)
    return make_cfg_safe(cfg)


def load_config(config_file, opts=()):
    """``build_cfg()`` merged with a YAML file and ``KEY VALUE`` overrides, frozen.

    Unknown keys get a did-you-mean, wrong types name the expected type; nothing is merged from a
    file or list that has a problem. A CUDA device without CUDA is an error, not a crash later.
    """
    cfg = build_cfg()
    merge_from_file_checked(cfg, config_file)
    merge_from_list_checked(cfg, list(opts))
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available; "
                           "override it with MODEL.DEVICE cpu")
    cfg.freeze()
    return cfg


def setup(args):
    cfg = load_config(args.config_file, args.opts)
    # datasets registered, NUM_CLASSES vs dataset metadata, MODEL.WEIGHTS exists
    check_config(cfg, check_weights=not args.resume)
    default_setup(cfg, args)
    for name in ("maskformer_d2", "restr_d2", "d2_common"):
        setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name)
    return cfg


def main(args):
    cfg = setup(args)
    logger.info(
        f"Model {cfg.MODEL.META_ARCHITECTURE}, train {list(cfg.DATASETS.TRAIN)}, test "
        f"{list(cfg.DATASETS.TEST)}, mapper '{cfg.INPUT.DATASET_MAPPER_NAME or 'detectron2 default'}', "
        f"world size {comm.get_world_size()}"
    )
    if args.eval_only:
        model = Trainer.build_model(cfg)
        if args.resume:
            ResilientCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=True)
        else:
            # tensors whose shapes differ from the model's are an error here, not a warning:
            # evaluating a randomly initialised classifier would print a meaningless table
            load_weights_checked(model, cfg.MODEL.WEIGHTS)
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            res.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    cli()
