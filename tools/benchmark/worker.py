"""Peak-memory worker: one benchmark case in a fresh process.

    python -m tools.benchmark.worker SPEC.json OUT.json

SPEC: {"preset" (name), "preset_fields" (optional: the Preset's fields), "extra_options", "impl" ("ours"|"peer"), "mode" ("network"|"end_to_end"|
"train"), "batch", "size" [H, W], "threads", "seed", "weights" (file from `save_pair_weights`
or null)}. The worker imports the libraries, records RSS (`baseline_rss_mb`), builds the model
and batch, runs the step once untimed (first-call allocations, optimizer state), then measures
the peak RSS of one more step (see memory.py). `peak_over_baseline_mb` = peak - baseline is the
memory the case needs beyond the interpreter and libraries: weights, optimizer state,
activations and gradients.
"""
import gc
import json
import sys

import torch

__all__ = ["save_pair_weights", "run_spec"]


def save_pair_weights(weights, path):
    torch.save({"hf_config_json": weights["hf_config"].to_json_string(),
                "peer": weights["peer"], "ours": weights["ours"]}, path)


def _load_pair_weights(path):
    from transformers import Mask2FormerConfig

    blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return {"hf_config": Mask2FormerConfig.from_dict(json.loads(blob["hf_config_json"])),
            "peer": blob["peer"], "ours": blob["ours"]}


def run_spec(spec):
    from .memory import measure_peak, rss_mb

    torch.set_num_threads(int(spec["threads"]))
    from .families import batch_for, cfg_for
    from .models import D2MaskFormerBench, HFMask2FormerBench, task_of
    from .presets import get_preset

    from .presets import Preset

    pf = spec.get("preset_fields")
    preset = Preset(**pf) if pf else get_preset(spec["preset"])
    cfg = cfg_for(preset, spec.get("extra_options", []))
    if spec["impl"] == "peer":
        import transformers  # noqa: F401
    else:
        import detectron2.modeling  # noqa: F401

        if preset.family == "maskformer":
            import maskformer_d2  # noqa: F401
        else:
            import restr_d2  # noqa: F401
    gc.collect()
    baseline = rss_mb()
    if spec.get("weights"):
        w = _load_pair_weights(spec["weights"])
        if spec["impl"] == "peer":
            bench = HFMask2FormerBench(w["hf_config"], w["peer"], task=task_of(cfg))
        else:
            bench = D2MaskFormerBench(cfg, w["ours"])
        del w
    else:
        from .families import build_subjects

        bench = build_subjects(preset, cfg, seed=int(spec.get("seed", 0)), with_peer=False)["ours"]
    gc.collect()
    batch = batch_for(preset, cfg, int(spec["batch"]), tuple(spec["size"]), seed=int(spec.get("seed", 0)))
    method = {"train": "train_step"}.get(spec["mode"], spec["mode"])
    fn = getattr(bench, method)(batch)
    fn()
    gc.collect()
    res = measure_peak(fn)
    res["baseline_rss_mb"] = baseline
    res["peak_over_baseline_mb"] = res["peak_rss_mb"] - baseline
    res["spec"] = {k: v for k, v in spec.items() if k != "weights"}
    return res


def main(argv):
    with open(argv[1]) as f:
        spec = json.load(f)
    res = run_spec(spec)
    with open(argv[2], "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
