#!/usr/bin/env python
"""Convert an official ReSTR checkpoint (github.com/SouthFlame/restr, ``train_restr.py``) into a
detectron2 checkpoint for ``MODEL.WEIGHTS``.

Official checkpoints are bare ``model.state_dict()`` files whose keys already equal ours, so
``MODEL.WEIGHTS`` may also point at the official ``.pth`` directly; this tool normalises the
container (``module.`` prefixes, ``{"model"|"state_dict": ...}``), checks every key and shape
against the model built from ``--config-file`` with ``strict=True``, and writes
``{"model": state_dict, "__author__": ..., "matching_heuristics": False}``.

    python tools/convert/convert_restr_checkpoint.py Gref_400000.pth restr_gref.pth \
        --config-file configs/restr/restr_refcocog_google_480.yaml

The GloVe table is part of the checkpoint (``encoder_l.embedding.weight``); the model still
needs the vocabulary file (``MODEL.RESTR.LANGUAGE.VOCAB_FILE``) to tokenise sentences.
"""
import argparse


from segmentation_core.safe_checkpoint import save_checkpoint
from segmentation_core.safe_pickle import torch_load_weights_only
from restr_d2.modeling.restr.checkpoint import convert_official_restr_state_dict


def check_against_config(state_dict, config_file, opts):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    import restr_d2  # noqa: F401  (registers ReSTR)
    from segmentation_core.config import safe_merge_from_file
    from restr_d2.config import add_restr_config

    cfg = get_cfg()
    add_restr_config(cfg)
    safe_merge_from_file(cfg, config_file)
    cfg.merge_from_list(opts)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESTR.LANGUAGE.EMBEDDING_FILE = ""  # the table comes from the checkpoint
    model = build_model(cfg)
    model.load_state_dict(state_dict, strict=True)
    print(f"OK: {len(state_dict)} tensors load with strict=True into {config_file}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="official ReSTR .pth")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth, or .safetensors)")
    parser.add_argument("--config-file", default="", help="check keys/shapes against this config")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)

    ckpt = torch_load_weights_only(args.source)  # an UnsafePickleError names the file and the global
    sd = convert_official_restr_state_dict(ckpt)
    if args.config_file:
        check_against_config(sd, args.config_file, args.opts)
    save_checkpoint(
        {"model": sd, "__author__": "ReSTR official (tools/convert/convert_restr_checkpoint.py)", "matching_heuristics": False},
        args.output,
    )
    print(f"wrote {args.output} ({len(sd)} tensors, {sum(v.numel() for v in sd.values()):,} values)")


if __name__ == "__main__":
    main()
