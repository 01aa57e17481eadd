#!/usr/bin/env python
r"""Benchmark our models (and, where one exists, the Hugging Face peer with identical weights).

For each preset: inference latency (median, IQR, p10-p90) of the network at batch 1 and batch
N, user-facing end-to-end inference at batch 1, training iteration time at batch N (forward +
matching + loss + backward + AdamW step), images/s, peak RSS per case in a fresh subprocess,
FLOPs (fvcore) and achieved GFLOP/s against this machine's dense-matmul GFLOP/s measured in the
same run. Ours and the peer run interleaved (alternating per repetition); the report gives the
ratio ours/peer. Prints a table; writes JSON and markdown.

Examples:
    python tools/benchmark/benchmark.py --preset m2f_swin_t_panoptic --batch 2 --reps 10 \
        --json out/bench.json --md out/bench.md
    python tools/benchmark/benchmark.py --preset restr_p16 restr_p8 --modes network memory
    python tools/benchmark/benchmark.py --preset data_shapes_semantic --data-images 50
    python tools/benchmark/benchmark.py --preset m2f_swin_t_panoptic --modes network --warmup 2 \
        --variant MODEL.COMPILE.ENABLED True        # ours vs ours compiled vs the peer
    python tools/benchmark/benchmark.py --preset m2f_swin_t_panoptic --modes network end_to_end \
        --batch 1 --dtype bfloat16                   # ours fp32 vs ours bf16 vs the peer (fp32)

``--dtype bfloat16`` times our model with ``MODEL.INFERENCE_DTYPE bfloat16`` as the variant, next to
our float32 model and the float32 peer. It needs a CPU with native bf16 (``avx512_bf16`` or
``amx_bf16``): elsewhere it reports that and times nothing, unless ``--allow-emulated``, which
times the emulated (slower) bf16 and labels every bf16 figure "EMULATED".
    python tools/benchmark/benchmark.py --list
"""
import argparse
import logging
import os
import platform
import sys
import time


ALL_MODES = ("network", "end_to_end", "train", "memory", "flops")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def bf16_variant(dtype: str, allow_emulated: bool):
    """(variant options, label) for ``--dtype``; None (after printing why) when bf16 cannot be
    timed meaningfully on this CPU and emulation was not allowed."""
    if dtype != "bfloat16":
        return [], ""
    from segmentation_core.precision import cpu_bf16_support

    support = cpu_bf16_support()
    options = ["MODEL.INFERENCE_DTYPE", "bfloat16"]
    if support.native:
        return options, f"bfloat16 autocast (native: {', '.join(support.features)})"
    if not allow_emulated:
        print(f"bfloat16 not timed: {support.describe()}, so bf16 runs emulated, slower than float32; "
              "a figure here would say nothing about bf16 on a CPU that has it. Run on a CPU with "
              "avx512_bf16 or amx_bf16 (or add --allow-emulated to time the emulation, labelled EMULATED).")
        return None
    return (options + ["MODEL.INFERENCE_DTYPE_ALLOW_EMULATED", "True"],
            "bfloat16 autocast EMULATED (CPU lacks avx512_bf16/amx_bf16): not a bf16 speed figure")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", nargs="+", help="preset name(s); see --list")
    p.add_argument("--config-file", help="benchmark our model built from this YAML instead of a preset "
                   "(family taken from --family)")
    p.add_argument("--family", default="maskformer", choices=["maskformer", "segmenter", "restr"],
                   help="config family of --config-file")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                   help="detectron2 config overrides KEY VALUE ... (last argument)")
    p.add_argument("--variant", nargs="+", default=[], metavar="KEY_VALUE",
                   help="also time our model with these config overrides (KEY VALUE ...; same "
                   "weights), interleaved, as impl 'variant' with ratios against ours (warm-up "
                   "calls absorb torch.compile's compilation: a compiled variant needs --warmup >= 1)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="bfloat16: also time our model with MODEL.INFERENCE_DTYPE bfloat16 (as the "
                   "variant); needs native bf16 on the CPU (see --allow-emulated)")
    p.add_argument("--allow-emulated", action="store_true",
                   help="with --dtype bfloat16 on a CPU without avx512_bf16/amx_bf16: time the emulated "
                   "bf16 anyway (labelled EMULATED; for checking the tool, not a speed figure)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: preset's)")
    p.add_argument("--batch", type=int, default=2, help="batch N for network/train cases")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions per case")
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions per case")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--modes", nargs="+", default=list(ALL_MODES), choices=ALL_MODES)
    p.add_argument("--no-peer", action="store_true", help="do not run the Hugging Face peer")
    p.add_argument("--profile", action="store_true", help="add torch.profiler top ops per case")
    p.add_argument("--data-images", type=int, default=50, help="records mapped by data presets")
    p.add_argument("--matmul-n", type=int, default=2048, help="size of the reference matmul")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--md", help="write the report as markdown")
    p.add_argument("--list", action="store_true", help="list presets and exit")
    args = p.parse_args(argv)
    if not args.list and not args.preset and not args.config_file:
        p.error("give --preset NAME [NAME ...], --config-file FILE or --list")
    if len(args.variant) % 2:
        p.error(f"--variant takes KEY VALUE pairs; got {len(args.variant)} words: {args.variant}")
    if args.dtype == "bfloat16" and args.variant:
        p.error("--dtype bfloat16 is itself the variant (MODEL.INFERENCE_DTYPE bfloat16); drop --variant "
                "or give --variant MODEL.INFERENCE_DTYPE bfloat16 ... yourself")
    if args.allow_emulated and args.dtype != "bfloat16":
        p.error("--allow-emulated only applies with --dtype bfloat16")
    if "MODEL.COMPILE.ENABLED" in args.variant[::2] and args.warmup < 1:
        p.error("--variant needs --warmup >= 1 (a compiled variant compiles on its first calls)")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from tools.benchmark.flops import matmul_gflops
    from tools.benchmark.presets import PRESETS, Preset
    from tools.benchmark.report import format_table, write_report
    from tools.benchmark.runner import run_data_preset, run_preset

    if args.list:
        for p in PRESETS.values():
            peer = f" [peer: {p.peer}]" if p.peer else ""
            print(f"{p.name:24s} {p.description}{peer}")
        return 0
    torch.set_num_threads(args.threads)
    bf16 = bf16_variant(args.dtype, args.allow_emulated)
    if bf16 is None:
        return 2
    variant_options, variant_label = bf16 if args.dtype == "bfloat16" else (args.variant, "")
    names = list(args.preset or [])
    if args.config_file:
        custom = Preset("custom", args.family, f"--config-file {args.config_file}",
                        os.path.abspath(args.config_file), [])
        PRESETS["custom"] = custom
        names.append("custom")
    report = {
        "command": "python tools/benchmark/benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"torch": torch.__version__, "threads": args.threads, "cpu": _cpu_name(),
                    "cores": os.cpu_count(), "loadavg_before": _loadavg(),
                    "matmul": matmul_gflops(args.matmul_n)},
        "presets": [],
    }
    started = time.time()
    for name in names:
        preset = PRESETS[name] if name in PRESETS else None
        if preset is None:
            raise SystemExit(f"unknown preset {name!r}; use --list")
        if preset.family == "data":
            section = run_data_preset(name, images=args.data_images, threads=args.threads)
        else:
            section = run_preset(name, size=args.size, batch=args.batch, reps=args.reps,
                                 warmup=args.warmup, threads=args.threads, modes=args.modes,
                                 with_peer=not args.no_peer, extra_options=args.opts,
                                 profile=args.profile, variant_options=variant_options,
                                 matmul_gflops=report["machine"]["matmul"]["median_gflops"])
        if variant_label:
            section["variant_label"] = variant_label
        report["presets"].append(section)
    report["machine"]["loadavg_after"] = _loadavg()
    report["wall_s"] = time.time() - started
    print(format_table(report))
    write_report(report, args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
