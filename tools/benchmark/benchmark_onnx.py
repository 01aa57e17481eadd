#!/usr/bin/env python
"""onnxruntime vs PyTorch on CPU, per family, in one run with the two interleaved.

For each model: export to ONNX (tools/export/export_onnx.py's path), then
* network latency at batch 1: the PyTorch network (its default paths, e.g. the "gather"
  deformable-attention core) vs the onnxruntime graph on the same normalised input;
* end-to-end images/s at batch 1, 4 and 8 (image-only models): ``BatchPredictor`` vs
  ``ONNXPredictor`` on 8 same-size BGR images (pre-processing, network, post-processing);
  referring models: ``ReferringPredictor`` vs ``ONNXPredictor`` with 1 and 4 sentences.
Medians over ``--reps`` interleaved repetitions (A B, B A, ...). Random weights (timings do not
depend on the values). Prints a markdown table (``--md`` writes it).

    python tools/benchmark/benchmark_onnx.py --threads 2 --reps 5 --md out/onnx_bench.md
    python tools/benchmark/benchmark_onnx.py --model m2f --config-file configs/shapes/mask2former_R18_panoptic.yaml
"""
import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# the repository, for the shapes configs named below (not an import path)
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (config, overrides, network input size (H, W))
MODELS = {
    "mask2former_R18": ("configs/shapes/mask2former_R18_panoptic.yaml", [], (160, 224)),
    "maskformer_R18": ("configs/shapes/maskformer_R18_panoptic.yaml", [], (160, 224)),
    "segmenter_mask": ("configs/shapes/segmenter_mask.yaml", [], (128, 128)),
    "restr_shapes": ("configs/shapes/restr_shapes.yaml", [], (128, 128)),
}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", default=list(MODELS), help=f"models to run (default all: {list(MODELS)})")
    p.add_argument("--config-file", help="run this config instead, under the (single) --model name")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="network input size (default per model)")
    p.add_argument("--image-size", type=int, nargs=2, default=(160, 224), metavar=("H", "W"),
                   help="size of the BGR images fed to the predictors (default 160 224)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--threads", type=int, default=1,
                   help="torch and onnxruntime intra-op threads (default 1: on a machine whose cores other "
                        "processes use, 2 OpenMP threads made PyTorch calls vary 13-390 ms)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--md", help="write the markdown table here")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides KEY VALUE ...")
    return p


def _median_ms(xs):
    return 1000 * statistics.median(xs)


def bench_model(name, config_file, opts, size, args, workdir):
    import numpy as np
    import torch
    from detectron2.modeling import build_model

    from segmentation_core.benchmark.timing import interleaved_timings
    from segmentation_core.engine.batch_predictor import BatchPredictor
    from segmentation_core.export import build_export_spec
    from segmentation_core.export.onnx_export import export_onnx, ort_session
    from segmentation_core.export.predictor import ONNXPredictor
    from train_net import load_config

    torch.manual_seed(0)
    weights = os.path.join(workdir, f"{name}.pth")
    cfg = load_config(os.path.join(_REPO, config_file), list(opts))
    model = build_model(cfg).eval()
    torch.save({"model": model.state_dict()}, weights)
    cfg = load_config(os.path.join(_REPO, config_file), list(opts) + ["MODEL.WEIGHTS", weights])
    spec = build_export_spec(model, cfg)
    path = os.path.join(workdir, f"{name}.onnx")
    t0 = time.perf_counter()
    export_onnx(spec, path, batch=2, height=size[0], width=size[1])
    export_s = time.perf_counter() - t0
    rows = []

    # network, batch 1
    session = ort_session(path, args.threads)
    module = spec.graph_module().eval()
    inputs = spec.example_inputs(1, *size)
    feeds = {n: x.numpy() for n, x in zip(spec.input_names, inputs)}

    def torch_net():
        with torch.no_grad():
            module(**dict(zip(spec.input_names, inputs)))

    t = interleaved_timings({"pytorch": torch_net, "onnxruntime": lambda: session.run(None, feeds)},
                            args.reps, args.warmup)
    pt, ox = _median_ms(t["pytorch"]), _median_ms(t["onnxruntime"])
    what = "1 image x 2 sentences" if cfg.MODEL.META_ARCHITECTURE == "ReSTR" else "batch 1"
    rows.append((name, f"network, {what}, {size[0]}x{size[1]}", f"{pt:.1f} ms", f"{ox:.1f} ms", pt / ox))

    rng = np.random.default_rng(0)
    h, w = args.image_size
    images = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(max(args.batches))]
    if cfg.MODEL.META_ARCHITECTURE == "ReSTR":
        from restr_d2.engine.predictor import ReferringPredictor

        torch_pred, onnx_pred = ReferringPredictor(cfg), ONNXPredictor(path, cfg, num_threads=args.threads)
        vocab = [v for v in torch_pred.model.encoder_l.vocab if v.isalpha()] or ["object"]
        for k in (1, 4):
            sentences = [" ".join(vocab[i % len(vocab)] for i in range(j, j + 3)) for j in range(k)]
            t = interleaved_timings({"pytorch": lambda: torch_pred(images[0], sentences),
                                     "onnxruntime": lambda: onnx_pred(images[0], sentences)},
                                    args.reps, args.warmup)
            pt, ox = _median_ms(t["pytorch"]), _median_ms(t["onnxruntime"])
            rows.append((name, f"end to end, {k} sentence(s), {h}x{w} image", f"{pt:.1f} ms", f"{ox:.1f} ms", pt / ox))
        return rows, export_s
    for b in args.batches:
        torch_pred = BatchPredictor(cfg, batch_size=b)
        onnx_pred = ONNXPredictor(path, cfg, num_threads=args.threads, batch_size=b)
        batch_images = images[:max(args.batches)]
        t = interleaved_timings({"pytorch": lambda: torch_pred(batch_images),
                                 "onnxruntime": lambda: onnx_pred(batch_images)}, args.reps, args.warmup)
        n = len(batch_images)
        pt, ox = n / statistics.median(t["pytorch"]), n / statistics.median(t["onnxruntime"])
        rows.append((name, f"end to end, batch {b}, {n} images {h}x{w}", f"{pt:.2f} img/s", f"{ox:.2f} img/s", ox / pt))
    return rows, export_s


def _cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    if args.config_file:
        if len(args.model) != 1:
            raise SystemExit("--config-file needs exactly one --model NAME for its rows")
        models = {args.model[0]: (os.path.abspath(args.config_file), [], args.size or (256, 256))}
    else:
        unknown = [m for m in args.model if m not in MODELS]
        if unknown:
            raise SystemExit(f"unknown --model {unknown}; choose from {list(MODELS)} or give --config-file")
        models = {m: MODELS[m] for m in args.model}
    load_before = os.getloadavg()
    rows, exports = [], {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, (config_file, opts, size) in models.items():
            r, exports[name] = bench_model(name, config_file, list(opts) + list(args.opts),
                                           tuple(args.size or size), args, workdir)
            rows += r
            print(f"{name}: done ({len(r)} rows)", file=sys.stderr, flush=True)
    command = "python tools/benchmark/benchmark_onnx.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"Command: `{command}`",
        f"CPU: {_cpu_name()} ({os.cpu_count()} cores), {args.threads} threads; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; medians of {args.reps} interleaved repetitions; "
        f"export times {', '.join(f'{k} {v:.0f} s' for k, v in exports.items())}; load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after",
        "",
        "| model | case | PyTorch | onnxruntime | onnxruntime speed-up |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {case} | {pt} | {ox} | {ratio:.2f}x |" for m, case, pt, ox, ratio in rows]
    text = "\n".join(lines)
    print(text)
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        with open(args.md, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
