#!/usr/bin/env python
"""Time the multi-scale deformable attention cores against each other, interleaved, at the
shapes of a Mask2Former pixel decoder (default: 512x512 input -> levels 64x64, 32x32, 16x16,
8 heads of 32 channels, 4 points), forward under inference mode and forward + backward.

    python tools/benchmark/ms_deform_attn.py --batch 1 --reps 7 --threads 2
"""
import argparse
import statistics
import time

import torch

from maskformer_d2.layers.ms_deform_attn import MS_DEFORM_ATTN_IMPLS


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input-size", type=int, default=512, help="image side; levels at strides 8, 16, 32")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--impls", nargs="+", default=sorted(MS_DEFORM_ATTN_IMPLS), choices=sorted(MS_DEFORM_ATTN_IMPLS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    shapes = [(args.input_size // s, args.input_size // s) for s in (8, 16, 32)]
    s = sum(h * w for h, w in shapes)
    n, m, d, p, nl = args.batch, args.heads, args.head_dim, args.points, len(shapes)
    g = torch.Generator().manual_seed(0)
    value = torch.randn(n, s, m, d, generator=g)
    loc = torch.rand(n, s, m, nl, p, 2, generator=g) * 1.4 - 0.2  # some points outside the maps
    weights = torch.rand(n, s, m, nl, p, generator=g).softmax(-1)
    grad = torch.randn(n, s, m * d, generator=g)

    def forward(core):
        with torch.inference_mode():
            return core(value, shapes, loc, weights)

    def forward_backward(core):
        v, l, a = (t.clone().requires_grad_(True) for t in (value, loc, weights))
        (core(v, shapes, l, a) * grad).sum().backward()

    ref = forward(MS_DEFORM_ATTN_IMPLS["pytorch"])
    print(f"levels {shapes}, batch {n}, {m} heads x {d}, {p} points, {args.threads} threads")
    for case, fn in (("forward", forward), ("forward+backward", forward_backward)):
        times = {k: [] for k in args.impls}
        for k in args.impls:
            fn(MS_DEFORM_ATTN_IMPLS[k])  # warm-up
        for r in range(args.reps):
            order = args.impls if r % 2 == 0 else args.impls[::-1]
            for k in order:
                t = time.perf_counter()
                fn(MS_DEFORM_ATTN_IMPLS[k])
                times[k].append(1000 * (time.perf_counter() - t))
        base = statistics.median(times["pytorch"]) if "pytorch" in times else None
        for k, v in times.items():
            q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
            extra = f"  {base / statistics.median(v):.2f}x vs pytorch" if base else ""
            diff = float((forward(MS_DEFORM_ATTN_IMPLS[k]) - ref).abs().max()) if case == "forward" else None
            print(f"{case:17s} {k:18s} median {statistics.median(v):8.1f} ms  IQR {q[0]:.1f}-{q[2]:.1f}{extra}"
                  + (f"  max abs diff vs pytorch {diff:.2g}" if diff is not None else ""))


if __name__ == "__main__":
    main()
