#!/usr/bin/env python
"""Convert a Hugging Face `Mask2FormerForUniversalSegmentation` (Swin backbone) into a
detectron2 checkpoint whose keys are the official Mask2Former keys (`backbone.*`,
`sem_seg_head.pixel_decoder.*`, `sem_seg_head.predictor.*`, `criterion.empty_weight`).

The conversion is key by key and exhaustive: every Hugging Face tensor is consumed exactly once
(or is on the short, named list of tensors the Hugging Face forward never reads), and, when the
expected official key set is known (our model built from a config, or a `{key: shape}` JSON),
every official key is produced with the right shape. Anything left over in either direction is
an error that lists the keys.

The key map and the conventions it converts (q/k/v layouts, relative-position index,
layer-norm names, class order and no-object, pixel normalisation) are documented in
`tools/convert/hf_mask2former.py`.

Usage:
    python tools/convert/convert_hf_mask2former.py --hf-model DIR_OR_FILE --output model.pth \
        [--hf-config config.json] [--config-out model.yaml] [--verify-config model.yaml] \
        [--expected-keys keys.json]

`DIR_OR_FILE` is a `save_pretrained` directory, or a `.safetensors`/`.bin`/`.pt` state dict
(then `--hf-config` gives its `config.json`; `.bin`/`.pt` are read with
`torch.load(weights_only=True)`). Nothing is downloaded. `--output model.safetensors` writes
safetensors (tensors only), any other name `torch.save`.
"""
import argparse
import json
import logging
import os
import sys


from tools.convert.hf_mask2former import (
    build_d2_cfg, check_expected_keys, convert_hf_to_d2, hf_config_to_d2_options,
)
from segmentation_core.safe_checkpoint import load_checkpoint_file, save_checkpoint
from segmentation_core.safe_pickle import torch_load_weights_only

logger = logging.getLogger("convert_hf_mask2former")


def _load_hf(path, config_path=None):
    """(state_dict, Mask2FormerConfig) from a save_pretrained dir or a state-dict file."""
    from transformers import Mask2FormerConfig

    if os.path.isdir(path):
        from transformers import Mask2FormerForUniversalSegmentation

        model = Mask2FormerForUniversalSegmentation.from_pretrained(path, local_files_only=True)
        return model.state_dict(), model.config
    if config_path is None:
        raise SystemExit(f"{path} is a state-dict file: pass its config.json with --hf-config")
    config = Mask2FormerConfig.from_json_file(config_path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path)
    else:
        sd = torch_load_weights_only(path)  # an UnsafePickleError names the file and the global
        if "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
    return sd, config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf-model", required=True,
                        help="save_pretrained directory, or a .safetensors/.bin/.pt state dict")
    parser.add_argument("--hf-config", help="config.json for a state-dict file")
    parser.add_argument("--output", required=True,
                        help="detectron2 checkpoint to write (.pth, or .safetensors)")
    parser.add_argument("--config-out", help="write a detectron2 YAML for the converted model")
    parser.add_argument("--verify-config",
                        help="build our model from this YAML and load the weights with strict=True")
    parser.add_argument("--expected-keys", help="{key: shape} JSON the result must match exactly")
    parser.add_argument("--drop-criterion", action="store_true",
                        help="leave out criterion.empty_weight")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    hf_sd, hf_config = _load_hf(args.hf_model, args.hf_config)
    converted = convert_hf_to_d2(hf_sd, drop_criterion=args.drop_criterion)
    logger.info("converted %d Hugging Face tensors into %d official tensors",
                len(hf_sd), len(converted))
    if args.expected_keys:
        with open(args.expected_keys) as f:
            check_expected_keys(converted, json.load(f))
        logger.info("key set and shapes match %s", args.expected_keys)
    options = hf_config_to_d2_options(hf_config)
    if args.config_out:
        cfg = build_d2_cfg(options)
        names = [hf_config.id2label[i] for i in range(hf_config.num_labels)]
        with open(args.config_out, "w") as f:
            f.write("# Converted from a Hugging Face Mask2Former. Classes in id order (the class "
                    "head's last logit is no-object):\n# " + json.dumps(names) + "\n")
            f.write(cfg.dump())
        logger.info("wrote %s", args.config_out)
    save_checkpoint({"model": converted, "__author__": "convert_hf_mask2former",
                     "matching_heuristics": False}, args.output)
    logger.info("wrote %s", args.output)
    if args.verify_config:
        from detectron2.modeling import build_model

        import maskformer_d2  # noqa: F401  (registers the model)

        model = build_model(build_d2_cfg([], args.verify_config))
        saved = load_checkpoint_file(args.output)["model"]
        model.load_state_dict(saved, strict=True)
        logger.info("%s reloaded into %s built from %s with strict=True",
                    args.output, type(model).__name__, args.verify_config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
