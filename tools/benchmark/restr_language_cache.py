#!/usr/bin/env python
"""Time a ReSTR training step with and without the language feature cache
(``MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB``), interleaved in one process on the same batches.

The config's model is built once (with the cache, its MODEL.WEIGHTS loaded where the file exists);
every step alternates between the cache and the frozen encoder run directly. The batches are
drawn once and every one is run before timing, so both caches (the ViT's too, where on) are warm
and the timed steps differ only in the language encoder.

    DETECTRON2_DATASETS=datasets python tools/benchmark/restr_language_cache.py \\
        --config-file configs/shapes/restr_shapes_dinov2_s14_minilm.yaml --batches 40 --threads 1
"""
import argparse
import os
import statistics
import time

import torch

import segmentation_core  # noqa: F401  (imports detectron2 quietly first)
import maskformer_d2  # noqa: F401
import restr_d2  # noqa: F401
from detectron2.modeling import build_model
from segmentation_core.checkpoint_policy import load_weights_checked
from segmentation_core.config import load_config
from segmentation_core.engine.trainer import Trainer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-file", default="configs/shapes/restr_shapes_dinov2_s14_minilm.yaml")
    ap.add_argument("--batches", type=int, default=40, help="distinct batches; each is timed once per mode")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache-mb", type=float, default=64, help="MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB of the cached mode")
    ap.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config_file, list(args.opts) + ["MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB", str(args.cache_mb)])
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS and os.path.exists(cfg.MODEL.WEIGHTS):
        # a partial start (the converted ViT): the rest keeps its initialisation, as in training
        load_weights_checked(model, cfg.MODEL.WEIGHTS, policy="lenient")
    else:
        print(f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r} not found: timing with random weights (same cost)")
    model.train()
    cache = model.encoder_l.feature_cache
    loader = iter(Trainer.build_train_loader(cfg))
    batches = [next(loader) for _ in range(args.batches)]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)

    def step(batch):
        losses = model(batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    for batch in batches:  # warm both caches
        step(batch)
    times = {"cached": [], "direct": []}
    for i, batch in enumerate(batches):  # every batch once in each mode, A B / B A
        for mode in (("cached", "direct") if i % 2 == 0 else ("direct", "cached")):
            model.encoder_l.feature_cache = cache if mode == "cached" else None
            start = time.perf_counter()
            step(batch)
            times[mode].append(time.perf_counter() - start)
    model.encoder_l.feature_cache = cache
    print(f"{args.config_file}, {args.batches} batches of {cfg.SOLVER.IMS_PER_BATCH}, {args.threads} thread(s), "
          f"language cache {len(cache)} sentences ({cache.nbytes / 2**20:.1f} MiB)")
    for mode, values in times.items():
        print(f"  {mode:7s} step: median {1000 * statistics.median(values):7.1f} ms, "
              f"min {1000 * min(values):7.1f} ms ({len(values)} steps)")
    print(f"  speed-up of the cache (median / median): "
          f"{statistics.median(times['direct']) / statistics.median(times['cached']):.2f}x")


if __name__ == "__main__":
    main()
