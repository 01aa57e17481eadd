#!/usr/bin/env python
"""Generate (or verify) the synthetic ``shapes`` datasets ahead of training.

    python tools/data/generate_shapes.py                        # $DETECTRON2_DATASETS/shapes, 200/50
    python tools/data/generate_shapes.py --num-train 1000 --num-val 200 --root /data
    python tools/data/generate_shapes.py --verify-only          # exit 1 if missing / corrupt

Training with the same sizes needs SHAPES_NUM_TRAIN / SHAPES_NUM_VAL / SHAPES_SEED set to the
same values (they default to 200 / 50 / 0), otherwise the first use regenerates the data.
"""
import argparse
import logging
import os
import sys
import time


from segmentation_core.data.shapes.cache import (
    SHAPES_DIRNAME, config_from_env, datasets_root, ensure_shapes, verify_shapes,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="datasets root (default $DETECTRON2_DATASETS or ./datasets)")
    p.add_argument("--num-train", type=int, default=None, help="default $SHAPES_NUM_TRAIN or 200")
    p.add_argument("--num-val", type=int, default=None, help="default $SHAPES_NUM_VAL or 50")
    p.add_argument("--seed", type=int, default=None, help="default $SHAPES_SEED or 0")
    p.add_argument("--verify-only", action="store_true", help="only check the existing dataset")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    root = datasets_root(args.root)
    config = config_from_env(args.num_train, args.num_val, args.seed)
    if args.verify_only:
        problems = verify_shapes(os.path.join(root, SHAPES_DIRNAME), config)
        for line in problems:
            print(line)
        print("OK" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    start = time.perf_counter()
    path = ensure_shapes(root, config)
    print(f"shapes dataset ready at {path} ({config.num_train} train / {config.num_val} val, "
          f"seed {config.seed}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
