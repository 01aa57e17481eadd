#!/usr/bin/env python3
"""How fast a ReSTR head grounds sentences on frozen features: the experiment behind
``MODEL.RESTR.FUSION.INPUT_NORM`` and the decoder-less DINOv2 configs (issue 18).

    python tools/analysis/referring_fusion_probe.py --config-file configs/shapes/restr_shapes_dinov2_s14_minilm.yaml \\
        --head fusion --steps 1500 [--input-norm layernorm] [--decoder] [--opts KEY VALUE ...]
    python tools/analysis/referring_fusion_probe.py --config-file ... --head bilinear --steps 1500

The config's frozen vision encoder (``MODEL.WEIGHTS``, e.g. the converted DINOv2) and its frozen
language encoder (MiniLM) run once over ``shapes_refcoco_unc_{train,val}`` (test-mode mapper: no
flip), and the features are kept in ``--features`` (computed on the first use). Then only a head
trains, on batches drawn from the cached features (seed 0):

* ``fusion``: the config model's own ``fusion_module`` (``--input-norm``, ``--decoder`` and
  ``--opts`` change it), through ``ReSTR.losses`` (the config's loss weights), AdamW with the
  config's weight decay, warmup 100 + poly lr;
* ``bilinear``: LayerNorm + linear map of each patch token, dotted with an MLP of the mean-pooled
  language tokens (+ a bias): the simplest sentence-conditioned classifier; BCE + dice on the
  resized logits, AdamW (weight decay 0.01) at a constant lr.

The batches are drawn from the generator seeded with 0 just before the head is built.

Every quarter of ``--steps`` prints val oIoU / mIoU at the input resolution (224 px, the logits
resized bilinearly), which is cheaper than, and close to, ``ReferringEvaluator`` at the original
size. Needs a frozen language encoder (its features are cached too).
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


import maskformer_d2  # noqa: F401  (registers everything)
import restr_d2  # noqa: F401,E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from restr_d2.data.dataset_mappers.referring_dataset_mapper import ReferringDatasetMapper  # noqa: E402
from restr_d2.modeling.language.build import LanguageFeatures  # noqa: E402
from restr_d2.modeling.restr.fusion import build_fusion_module  # noqa: E402
from segmentation_core.config import load_config  # noqa: E402


def split_features(model, mapper, dataset):
    """(V (I, N, Dv) patch tokens per image, image index per sentence, language features,
    valid mask, (S, H, W) GT masks)."""
    vision, rows = {}, []
    for record in DatasetCatalog.get(dataset):
        d = mapper(record)
        if record["file_name"] not in vision:
            with torch.no_grad():
                tokens = model.encoder_v.forward_features(model.normalize(d["image"])[None])
            vision[record["file_name"]] = tokens[0, model.encoder_v.num_extra_tokens:]
        rows.append((record["file_name"], d["sentence"], d["gt_mask"].float()))
    files = sorted(vision)
    index = {f: i for i, f in enumerate(files)}
    with torch.no_grad():
        lang = model.encoder_l(**model.encoder_l.tokenize([s for _, s, _ in rows]))
    return (torch.stack([vision[f] for f in files]), torch.tensor([index[f] for f, _, _ in rows]),
            lang.features, lang.valid, torch.stack([g for _, _, g in rows]))


class BilinearHead(nn.Module):
    """(B, N, Dv) patches, (B, T, Dl) language -> (B, N) logits."""

    def __init__(self, d_vision: int, d_language: int, dim: int = 128):
        super().__init__()
        self.norm = nn.LayerNorm(d_vision)
        self.vision = nn.Linear(d_vision, dim)
        self.language = nn.Sequential(nn.Linear(d_language, 256), nn.GELU(), nn.Linear(256, dim + 1))

    def forward(self, patches, lang: LanguageFeatures):
        valid = lang.valid.float()[..., None]
        pooled = (lang.features * valid).sum(1) / valid.sum(1)
        classifier = self.language(pooled)
        return (self.vision(self.norm(patches)) @ classifier[:, :-1, None])[..., 0] + classifier[:, -1:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--head", choices=("fusion", "bilinear"), default="fusion")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--input-norm", default=None, help="MODEL.RESTR.FUSION.INPUT_NORM (default: the config's)")
    parser.add_argument("--decoder", action="store_true", help="keep the coarse-to-fine decoder on")
    parser.add_argument("--features", default="output/probe/referring_features.pt")
    parser.add_argument("--opts", nargs="*", default=[], help="more KEY VALUE config overrides")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    # the converted file holds only the ViT (the MiniLM comes with its package): a partial load
    opts = ["MODEL.WEIGHTS_STRICT", "False", "MODEL.VIT.FREEZE", "True", "MODEL.VIT.FEATURE_CACHE_MB", "0",
            "MODEL.RESTR.DECODER.ENABLED", str(args.decoder)] + list(args.opts)
    if args.input_norm is not None:
        opts += ["MODEL.RESTR.FUSION.INPUT_NORM", args.input_norm]
    cfg = load_config(args.config_file, opts)
    if not cfg.MODEL.RESTR.LANGUAGE.FREEZE:
        sys.exit("the probe caches the language features: use a config with MODEL.RESTR.LANGUAGE.FREEZE True (MiniLM)")
    model = build_model(cfg).train()
    if os.path.exists(args.features):
        train, val = torch.load(args.features, weights_only=True)
        print(f"features from {args.features}")
    else:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        model.eval()
        t = time.perf_counter()
        mapper = ReferringDatasetMapper(cfg, is_train=False)
        train = split_features(model, mapper, cfg.DATASETS.TRAIN[0])
        val = split_features(model, mapper, cfg.DATASETS.TEST[0])
        os.makedirs(os.path.dirname(os.path.abspath(args.features)), exist_ok=True)
        torch.save((train, val), args.features)
        print(f"features computed in {time.perf_counter() - t:.0f} s -> {args.features}")
        model.train()
    size = tuple(train[4].shape[-2:])
    grid = (size[0] // model.patch_size, size[1] // model.patch_size)

    if args.head == "fusion":
        # a fresh fusion from seed 0, whatever the encoders drew from the generator before
        torch.manual_seed(0)
        model.fusion_module = build_fusion_module(cfg, model.encoder_v.embed_dim, model.encoder_l.d_model)
        head = model.fusion_module.train()

        def logits(v, lang):
            out = head(v, grid, lang)
            return out["pixel_logits"], out["patch_logits"]
    else:
        torch.manual_seed(0)
        head = BilinearHead(train[0].shape[-1], train[2].shape[-1])

        def logits(v, lang):
            out = head(v, lang).view(-1, 1, *grid)
            return out, out

    def loss_fn(pixel_logits, patch_logits, gt):
        if args.head == "fusion":
            return sum(model.losses({"pixel_logits": pixel_logits, "patch_logits": patch_logits}, gt).values())
        prob = pixel_logits.sigmoid()
        dice = 1 - (2 * (prob * gt).sum((1, 2, 3)) + 1) / (prob.sum((1, 2, 3)) + gt.sum((1, 2, 3)) + 1)
        return F.binary_cross_entropy_with_logits(pixel_logits, gt) + dice.mean()

    def predict(split, rows):
        vision, image, feats, valid, _ = split
        pixel, patch = logits(vision[image[rows]], LanguageFeatures(feats[rows], valid[rows]))
        if tuple(pixel.shape[-2:]) != size:
            pixel = F.interpolate(pixel, size=size, mode="bilinear", align_corners=False)
        return pixel, patch

    def evaluate():
        head.eval()
        inter, union, ious = 0.0, 0.0, []
        with torch.no_grad():
            for start in range(0, len(val[1]), 64):
                rows = torch.arange(start, min(start + 64, len(val[1])))
                pred = predict(val, rows)[0][:, 0] > 0
                gt = val[4][rows] > 0.5
                i, u = (pred & gt).sum((1, 2)).float(), (pred | gt).sum((1, 2)).float()
                inter, union = inter + i.sum(), union + u.sum()
                ious.append(i / u.clamp(min=1))
        head.train()
        return 100 * inter / union, 100 * torch.cat(ious).mean()

    params = [p for p in head.parameters() if p.requires_grad]
    fusion = args.head == "fusion"
    opt = torch.optim.AdamW(params, args.lr, weight_decay=cfg.SOLVER.WEIGHT_DECAY if fusion else 0.01)
    t = time.perf_counter()
    for it in range(args.steps):
        if fusion:
            for group in opt.param_groups:
                group["lr"] = args.lr * min(1.0, (it + 1) / 100) * (1 - it / args.steps) ** 0.9
        rows = torch.randint(0, len(train[1]), (args.batch,))
        loss = loss_fn(*predict(train, rows), train[4][rows][:, None])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (it + 1) % max(1, args.steps // 4) == 0:
            oiou, miou = evaluate()
            print(f"step {it + 1}: val oIoU {oiou:.1f} mIoU {miou:.1f}, loss {loss.item():.3f} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
