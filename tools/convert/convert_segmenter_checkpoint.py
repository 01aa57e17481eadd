#!/usr/bin/env python
"""Convert Segmenter weights into a detectron2 checkpoint for ``restr_d2``'s ``Segmenter``.

The one converter for both sources, key by key; any key it cannot place is an error:

* ``--from segmenter``: an official checkpoint (``{"model": state_dict, "optimizer", ...}``,
  keys ``encoder.*``/``decoder.*``; read with ``torch.load(weights_only=True)``: it holds
  tensors and plain numbers only). Our model uses the same keys, so the weights are copied
  unchanged; ``--image-size`` resizes ``encoder.pos_embed`` for another training size and
  ``--encoder-only`` keeps the encoder only (fine-tuning on another class set).
* ``--from timm``: an ImageNet ViT/DeiT: a timm ``.pth``/``.bin``/``.safetensors`` state dict
  or a Google ``.npz`` (ImageNet-21k AugReg layout, what Segmenter's ``vit_*`` backbones load).
  The result holds ``encoder.*`` only and is flagged encoder-only; ``pos_embed`` is resized
  bilinearly (align_corners=False) from the source's square grid to ``--image-size``, as
  Segmenter's pretrained loading (timm 0.4.12) does. A head with another class count (the
  21843-way in21k head) needs ``--head reinit`` (official behaviour: left at init).

The output is a ``.safetensors`` file if its name ends so (tensors only), else ``torch.save``.
Load it with ``MODEL.WEIGHTS`` through ``SegmenterCheckpointer`` (refuses partial loads), or
plain ``DetectionCheckpointer``.

Examples::

    python tools/convert/convert_segmenter_checkpoint.py --from segmenter checkpoint.pth out.pth
    python tools/convert/convert_segmenter_checkpoint.py --from timm \\
        B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz \\
        vit_b16_512.pth --image-size 512 512 --head reinit
"""
import argparse
import logging


from segmentation_core.safe_checkpoint import save_checkpoint
from segmentation_core.safe_pickle import torch_load_weights_only

from restr_d2.modeling.backbone.timm_convert import convert_timm_vit, load_vit_source
from restr_d2.modeling.segmenter.checkpoint import (
    ENCODER_ONLY_FLAG,
    convert_official_segmenter,
)

logger = logging.getLogger("convert_segmenter_checkpoint")


def convert(args) -> dict:
    image_size = tuple(args.image_size) if args.image_size else None
    if args.source == "segmenter":
        ckpt = torch_load_weights_only(args.input)
        sd = convert_official_segmenter(
            ckpt,
            image_size=image_size,
            old_image_size=tuple(args.old_image_size) if args.old_image_size else None,
            encoder_only=args.encoder_only,
        )
        encoder_only = args.encoder_only
    else:
        if image_size is None:
            raise SystemExit("--from timm needs --image-size H W (the Segmenter training crop)")
        src = load_vit_source(args.input)
        patch = src["patch_embed.proj.weight"].shape[-1]
        sd = convert_timm_vit(src, image_size=image_size, patch_size=patch, head=args.head,
                              num_classes=args.num_classes, pos_embed_interp=args.interp,
                              prefix="encoder.")
        encoder_only = True
    out = {"model": sd, "__author__": "tools/convert/convert_segmenter_checkpoint.py",
           "matching_heuristics": False}
    if encoder_only:
        out[ENCODER_ONLY_FLAG] = True
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", choices=("segmenter", "timm"), required=True)
    p.add_argument("input")
    p.add_argument("output", help="checkpoint to write: .safetensors, else torch.save (.pth)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="training size of the target model (resizes pos_embed if needed)")
    p.add_argument("--old-image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="--from segmenter: the checkpoint's training size (default: square grid)")
    p.add_argument("--encoder-only", action="store_true", help="--from segmenter: drop decoder.*")
    p.add_argument("--head", choices=("error", "reinit", "drop"), default="error",
                   help="--from timm: ImageNet head with a class count other than --num-classes")
    p.add_argument("--num-classes", type=int, default=1000,
                   help="--from timm: MODEL.VIT.NUM_CLASSES of the target (official 1000)")
    p.add_argument("--interp", choices=("bilinear", "bicubic"), default="bilinear",
                   help="--from timm: pos_embed resize (Segmenter/timm 0.4.12: bilinear)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    out = convert(args)
    save_checkpoint(out, args.output)
    logger.info(f"wrote {len(out['model'])} tensors to {args.output}"
                f"{' (encoder only)' if out.get(ENCODER_ONLY_FLAG) else ''}")


if __name__ == "__main__":
    main()
