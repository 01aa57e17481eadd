"""Per-family construction of benchmark subjects: which implementations run, with which
weights, and how a synthetic batch becomes each model's inputs."""
from typing import Dict, List, Optional

import torch

from .models import (D2GenericBench, D2MaskFormerBench, HFMask2FormerBench, SyntheticBatch,
                     build_d2_cfg_for_preset, build_mask2former_pair, make_batch, task_of)

__all__ = ["num_classes_of", "build_subjects", "batch_for"]


def num_classes_of(cfg) -> int:
    return int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES) if "SEM_SEG_HEAD" in cfg.MODEL else 1


def batch_for(preset, cfg, batch: int, size, seed: int = 0) -> SyntheticBatch:
    if preset.family == "restr":
        # referring: one foreground object per image, class 0
        b = make_batch(batch, size, 1, seed=seed, objects_per_image=1)
        return b
    return make_batch(batch, size, num_classes_of(cfg), seed=seed)


def _segmenter_inputs(batch: SyntheticBatch, with_targets: bool) -> List[Dict]:
    out = []
    for i in range(batch.batch_size):
        img = batch.images[i]
        d = {"image": img, "height": img.shape[1], "width": img.shape[2]}
        if with_targets:
            sem = torch.full(img.shape[1:], 255, dtype=torch.long)
            for lab, m in zip(batch.labels[i], batch.masks[i]):
                sem[m] = lab
            d["sem_seg"] = sem
        out.append(d)
    return out


_SENTENCES = ("the red circle on the left", "a small square near the top",
              "the big star", "triangle at the bottom right")


def _referring_inputs(batch: SyntheticBatch, with_targets: bool) -> List[Dict]:
    out = []
    for i in range(batch.batch_size):
        img = batch.images[i]
        h, w = img.shape[1:]
        d = {"image": img, "sentence": _SENTENCES[i % len(_SENTENCES)], "height": h, "width": w,
             "resized_size": (h, w)}
        if with_targets:
            d["gt_mask"] = batch.masks[i][0].to(torch.uint8)
        out.append(d)
    return out


def build_subjects(preset, cfg, seed: int = 0, with_peer: bool = True,
                   weights: Optional[Dict] = None) -> Dict[str, object]:
    """{"ours": bench[, "peer": bench]} with identical weights for a peer.

    `weights` (from `pair_weights`) skips the seeded initialisation."""
    if preset.family == "maskformer":
        if preset.peer == "hf_mask2former" and with_peer:
            w = weights or pair_weights(preset, cfg, seed)
            task = task_of(cfg)
            return {"ours": D2MaskFormerBench(cfg, w["ours"], only_task=task),
                    "peer": HFMask2FormerBench(w["hf_config"], w["peer"], task=task)}
        torch.manual_seed(seed)
        return {"ours": D2MaskFormerBench(cfg)}
    if preset.family == "segmenter":
        torch.manual_seed(seed)
        return {"ours": D2GenericBench(cfg, _segmenter_inputs)}
    if preset.family == "restr":
        torch.manual_seed(seed)
        return {"ours": D2GenericBench(cfg, _referring_inputs)}
    raise ValueError(f"preset family {preset.family!r} has no model")


def pair_weights(preset, cfg, seed: int = 0) -> Dict[str, object]:
    """Identical weights for ours and the peer: {"hf_config", "peer", "ours"}."""
    if preset.peer != "hf_mask2former":
        raise ValueError(f"preset {preset.name} has no peer")
    hf_config, hf_sd, ours_sd = build_mask2former_pair(cfg, seed)
    return {"hf_config": hf_config, "peer": hf_sd, "ours": ours_sd}


def cfg_for(preset, extra_options=()):
    return build_d2_cfg_for_preset(preset, extra_options)
