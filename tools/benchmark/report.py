"""Plain-text table, markdown and JSON of a benchmark report."""
import json
from typing import Dict, List

__all__ = ["format_table", "to_markdown", "write_report"]


def _fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"


def _timing_lines(section: Dict) -> List[List[str]]:
    out = []
    label = section.get("variant_label", "")
    for r in section["rows"]:
        impl = r["impl"]
        if impl == "variant" and label:
            impl += " [EMULATED bf16]" if "EMULATED" in label else " [bf16]"
        out.append([section["preset"], r["case"], impl, str(r["batch"]),
                    "x".join(str(s) for s in r["size"]), _fmt(r["median_ms"]),
                    f"{_fmt(r['q1_ms'])}-{_fmt(r['q3_ms'])}", f"{_fmt(r['p10_ms'])}-{_fmt(r['p90_ms'])}",
                    _fmt(r["images_per_s"], 2), _fmt(r.get("achieved_gflops")),
                    _fmt(100 * r["fraction_of_matmul"], 1) if "fraction_of_matmul" in r else "-"])
    return out


_TIMING_HEAD = ["preset", "case", "impl", "batch", "size", "median ms", "IQR (q1-q3) ms",
                "p10-p90 ms", "images/s", "GFLOP/s", "% of matmul"]
_RATIO_HEAD = ["preset", "case", "batch", "ours/peer latency", "speed-up vs peer",
               "paired speed-ups: median (q1-q3, min-max)"]
_VARIANT_HEAD = ["preset", "variant options", "case", "batch", "variant/ours latency",
                 "speed-up vs ours", "speed-up vs peer"]
_MEM_HEAD = ["preset", "case", "impl", "batch", "peak RSS MiB", "baseline MiB",
             "peak - baseline MiB", "step delta MiB", "method"]


def _paired(r):
    p = r.get("paired_speedup")
    if not p:
        return "-"
    return (f"{_fmt(p['median'], 2)}x ({_fmt(p['q1'], 2)}-{_fmt(p['q3'], 2)}, "
            f"{_fmt(p['min'], 2)}-{_fmt(p['max'], 2)}; {p['pairs']} pairs)")


def _ratio_lines(section):
    return [[section["preset"], r["case"], str(r["batch"]), _fmt(r["latency_ours_over_peer"], 3),
             _fmt(r["speedup_ours_vs_peer"], 2) + "x", _paired(r)] for r in section["ratios"]]


def _variant_lines(section):
    opts = " ".join(str(o) for o in section.get("variant_options", []))
    if section.get("variant_label"):  # e.g. "bfloat16 autocast EMULATED (...)"
        opts = f"{opts} [{section['variant_label']}]"
    return [[section["preset"], opts, r["case"], str(r["batch"]), _fmt(r["variant_over_ours_latency"], 3),
             _fmt(r["speedup_variant_vs_ours"], 2) + "x",
             _fmt(r["speedup_variant_vs_peer"], 2) + "x" if "speedup_variant_vs_peer" in r else "-"]
            for r in section.get("variant_ratios", [])]


def _mem_lines(section):
    return [[section["preset"], m["case"], m["impl"], str(m["batch"]), _fmt(m["peak_rss_mb"]),
             _fmt(m["baseline_rss_mb"]), _fmt(m["peak_over_baseline_mb"]), _fmt(m["step_delta_mb"]),
             m["method"]] for m in section["memory"]]


def _text_table(head, lines):
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))]
                     + [fmt.format(*l) for l in lines])


def _md_table(head, lines):
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(l) + " |" for l in lines])


def _sections(report, table):
    secs = report["presets"]
    parts = [table(_TIMING_HEAD, [l for s in secs for l in _timing_lines(s)])]
    ratio = [l for s in secs for l in _ratio_lines(s)]
    if ratio:
        parts.append(table(_RATIO_HEAD, ratio))
    variant = [l for s in secs for l in _variant_lines(s)]
    if variant:
        parts.append(table(_VARIANT_HEAD, variant))
    mem = [l for s in secs for l in _mem_lines(s)]
    if mem:
        parts.append(table(_MEM_HEAD, mem))
    return parts


def _machine_line(report):
    m = report["machine"]
    mm = m.get("matmul") or {}
    return (f"torch {m['torch']}, {m['threads']} threads, CPU {m['cpu']}, "
            f"load average {m['loadavg_before']} -> {m['loadavg_after']}, dense fp32 matmul "
            f"n={mm.get('n')}: {_fmt(mm.get('median_gflops'))} GFLOP/s median "
            f"({_fmt(mm.get('best_gflops'))} best)")


def _dtype_line(section) -> str:
    by = section["variant_gflop_by_dtype"]
    total = sum(by.values()) or 1.0
    return (f"{section['preset']}: variant network (batch 1) matmul/conv/attention FLOPs by input dtype: "
            + ", ".join(f"{k} {v:.2f} GFLOP ({100 * v / total:.1f} %)" for k, v in by.items()))


def _op_rows(ops) -> List[List[str]]:
    """Profile ops (``profile_top_ops`` entries) as table rows: op, calls, self ms, %."""
    return [[o["op"], str(o["calls"]), _fmt(o["self_cpu_ms"]), _fmt(o["pct"])] for o in ops]


def _profile_line(section, key: str, prof: Dict) -> str:
    total = prof["total_self_cpu_ms"] or 1.0
    line = f"Profile {section['preset']} {key} (self CPU, total {prof['total_self_cpu_ms']:.1f} ms"
    if "matmul_class_ms" in prof:
        line += (f"; matmul/conv/attention kernels {prof['matmul_class_ms']:.1f} ms "
                 f"({100 * prof['matmul_class_ms'] / total:.1f} %), other {prof['other_ms']:.1f} ms "
                 f"({100 * prof['other_ms'] / total:.1f} %)")
    return line + ")"


def format_table(report: Dict) -> str:
    parts = [_machine_line(report)] + _sections(report, _text_table)
    for s in report["presets"]:
        if s.get("flops"):
            parts.append(f"{s['preset']}: {s['flops']['gflop_per_image']:.2f} GFLOP per image "
                         f"(network, fvcore x2)")
        if s.get("variant_gflop_by_dtype"):
            parts.append(_dtype_line(s))
        for key, prof in s.get("profile", {}).items():
            parts.append(_profile_line(s, key, prof) + ":\n" + _text_table(
                ["op (not matmul-class)", "calls", "self ms", "%"], _op_rows(prof.get("top_other_ops", [])[:8])))
        for msg in s.get("skipped", []):
            parts.append(f"{s['preset']}: skipped {msg}")
    return "\n\n".join(parts)


def to_markdown(report: Dict) -> str:
    parts = [f"Command: `{report['command']}`", "Machine: " + _machine_line(report)]
    parts += _sections(report, _md_table)
    for s in report["presets"]:
        if s.get("flops"):
            f = s["flops"]
            parts.append(f"{s['preset']}: {f['gflop_per_image']:.2f} GFLOP per image; uncounted "
                         f"ops: {', '.join(f['uncounted_ops']) or 'none'}")
        if s.get("variant_gflop_by_dtype"):
            parts.append(_dtype_line(s))
        for key, prof in s.get("profile", {}).items():
            parts.append(_profile_line(s, key, prof) + ":\n\n"
                         + _md_table(["op", "calls", "self ms", "%"], _op_rows(prof["top_ops"])))
        for msg in s.get("skipped", []):
            parts.append(f"{s['preset']}: skipped {msg}")
    return "\n\n".join(parts) + "\n"


def write_report(report: Dict, json_path=None, md_path=None):
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
    if md_path:
        with open(md_path, "w") as f:
            f.write(to_markdown(report))
