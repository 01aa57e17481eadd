#!/usr/bin/env python3
"""Train / evaluate any restr-d2 model (MaskFormer, Mask2Former, Segmenter, ReSTR).

    python train_net.py --config-file configs/.../x.yaml [--num-gpus N] [OPTS ...]
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS model.pth
    python train_net.py --config-file ... --resume

Without GPUs, ``--num-gpus N`` starts N CPU processes joined by gloo. A wrong input (config key,
YAML, checkpoint of another model, corrupt file, bad record, non-finite loss) stops it with one
line naming the problem and exit status 1 (``RESTR_D2_TRACEBACK=1``: with the traceback);
``cli()`` raises those errors for programs that call it.
"""
import logging

import segmentation_core  # noqa: F401  (first: imports detectron2 without its torch.jit.script warnings)
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import maskformer_d2  # noqa: F401  (registers models, datasets, mappers)
import restr_d2  # noqa: F401
from segmentation_core.config import build_cfg, load_config  # noqa: F401  (re-exported for old imports)
from segmentation_core.checkpoint_policy import load_weights_checked, weights_strict_from_cfg
from segmentation_core.config_checks import check_config
from segmentation_core.engine import launch
from segmentation_core.resume import ResilientCheckpointer
from segmentation_core.engine.trainer import Trainer
from segmentation_core.engine.run_setup import default_setup_plain, log_device
from segmentation_core.engine.user_errors import run_command_line

logger = logging.getLogger("restr_d2.train_net")


def setup(args):
    cfg = load_config(args.config_file, args.opts)
    # datasets registered, NUM_CLASSES vs dataset metadata, MODEL.WEIGHTS exists
    check_config(cfg, check_weights=not args.resume)
    default_setup_plain(cfg, args)  # default_setup, with no ANSI codes in log.txt
    for name in ("maskformer_d2", "restr_d2", "segmentation_core"):
        setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=name)
    log_device(cfg, logger)
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
        # the weights must cover the whole model: a missing, unexpected or mis-shaped tensor is an
        # error, since evaluating a partly random model would print a meaningless table
        if args.resume:
            ResilientCheckpointer(model, save_dir=cfg.OUTPUT_DIR, weights_strict=weights_strict_from_cfg(cfg),
                                  initial_weights_policy="complete").resume_or_load(cfg.MODEL.WEIGHTS, resume=True)
        else:
            load_weights_checked(model, cfg.MODEL.WEIGHTS,
                                 policy="complete" if weights_strict_from_cfg(cfg) else "lenient")
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
    raise SystemExit(run_command_line(cli, "train_net.py"))
