"""tools/benchmark/benchmark.py: statistics, the report's structure on the tiny Mask2Former
preset (1 repetition; not its timings), the presets' configs. The full-size forward of every
preset, the memory worker and a compiled variant are ``slow`` (``make test-slow``)."""
import json

import pytest

from tools.benchmark.stats import paired_speedups, summarize
from tools.benchmark.timing import interleaved_timings


def test_summary_statistics():
    s = summarize([0.001, 0.002, 0.003, 0.004, 0.010])
    assert s["n"] == 5 and s["median_ms"] == 3.0
    assert (s["q1_ms"], s["q3_ms"], s["iqr_ms"]) == (2.0, 4.0, 2.0)
    assert abs(s["p90_ms"] - 7.6) < 1e-9 and abs(s["p10_ms"] - 1.4) < 1e-9


def test_paired_speedups_are_per_repetition_ratios():
    # a load change in repetitions 3-4 slows both: the pairs stay near 2x, while the ratio
    # of the medians (peer 400 / ours 150 = 2.67x) mixes repetitions taken under other loads
    ours = [100.0, 100.0, 150.0, 300.0, 300.0]
    peer = [200.0, 210.0, 400.0, 600.0, 570.0]
    p = paired_speedups(ours, peer)
    assert p["pairs"] == 5 and p["median"] == 2.0 and p["min"] == 1.9 and abs(p["max"] - 400 / 150) < 1e-12
    assert (p["q1"], p["q3"]) == (2.0, 2.1)
    with pytest.raises(ValueError, match="same number"):
        paired_speedups([1.0, 2.0], [1.0])


def test_interleaving_alternates_the_order():
    calls = []
    interleaved_timings({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                        reps=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]


def test_benchmark_tool_report_structure(tmp_path):
    from tools.benchmark.benchmark import main

    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(["--preset", "tiny_m2f_swin", "--batch", "2", "--reps", "1", "--warmup", "0",
                 "--matmul-n", "256", "--modes", "network", "train", "flops",
                 "--json", str(out_json), "--md", str(out_md)]) == 0
    report = json.loads(out_json.read_text())
    assert report["machine"]["threads"] == 2 and report["machine"]["matmul"]["median_gflops"] > 0
    (sec,) = report["presets"]
    assert sec["preset"] == "tiny_m2f_swin" and sec["impls"] == ["ours", "peer"]
    cases = {(r["case"], r["impl"], r["batch"]) for r in sec["rows"]}
    assert cases == {(c, i, b) for c, b in [("network", 1), ("network", 2), ("train", 2)]
                     for i in ("ours", "peer")}
    for r in sec["rows"]:
        assert r["n"] == 1 and r["median_ms"] > 0 and r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["images_per_s"] > 0
        if r["case"] == "network":
            assert r["achieved_gflops"] > 0 and 0 < r["fraction_of_matmul"]
    assert {(q["case"], q["batch"]) for q in sec["ratios"]} == {("network", 1), ("network", 2), ("train", 2)}
    for q in sec["ratios"]:
        assert abs(q["latency_ours_over_peer"] * q["speedup_ours_vs_peer"] - 1) < 1e-9
        # one repetition: one pair, whose speed-up is the ratio of the (one-sample) medians
        assert q["paired_speedup"]["pairs"] == 1
        assert abs(q["paired_speedup"]["median"] - q["speedup_ours_vs_peer"]) < 1e-9
    assert sec["flops"]["gflop_per_image"] > 0.05
    assert sec["memory"] == [] and sec["skipped"] == []
    md = out_md.read_text()
    assert "| tiny_m2f_swin | network | ours | 1 | 64x64 |" in md and "speed-up vs peer" in md
    assert "paired speed-ups" in md and "; 1 pairs)" in md


@pytest.mark.slow
def test_benchmark_memory_worker(tmp_path):
    from tools.benchmark.benchmark import main

    out_json = tmp_path / "bench.json"
    assert main(["--preset", "tiny_m2f_swin", "--no-peer", "--reps", "1", "--warmup", "0",
                 "--matmul-n", "128", "--modes", "network", "memory", "--json", str(out_json)]) == 0
    (sec,) = json.loads(out_json.read_text())["presets"]
    (mem,) = sec["memory"]
    assert (mem["case"], mem["impl"], mem["batch"]) == ("network", "ours", 1)
    assert mem["peak_rss_mb"] >= mem["rss_before_step_mb"] > mem["baseline_rss_mb"] > 100
    assert mem["peak_over_baseline_mb"] > 1  # the model's weights at least
    assert mem["method"].startswith(("VmHWM", "ru_maxrss"))


@pytest.mark.slow
def test_every_model_preset_runs(tmp_path):
    """Each full-size preset builds from its config and runs one batch-1 forward (64x64): a
    preset whose config no longer builds the intended model fails here, not in a long run."""
    from tools.benchmark.presets import PRESETS
    from tools.benchmark.benchmark import main

    names = [n for n, p in PRESETS.items() if p.family != "data" and not n.startswith("tiny")]
    assert {"m2f_swin_t_panoptic", "m2f_r50_semantic", "mf_r50_semantic", "segmenter_vit_b_mask",
            "restr_p16", "restr_p8"} <= set(names)
    out_json = tmp_path / "bench.json"
    assert main(["--preset", *names, "--no-peer", "--size", "64", "64", "--batch", "1", "--reps", "1",
                 "--warmup", "0", "--matmul-n", "64", "--modes", "network", "--json", str(out_json)]) == 0
    sections = json.loads(out_json.read_text())["presets"]
    assert [s["preset"] for s in sections] == names
    for s in sections:
        assert [(r["case"], r["batch"]) for r in s["rows"]] == [("network", 1)], s["preset"]
        assert s["rows"][0]["median_ms"] > 0


@pytest.mark.slow
def test_benchmark_variant_same_weights_interleaved(tmp_path):
    """--variant: our model again with extra config options (here compiled with dynamo's eager
    backend), timed beside ours and the peer, with its own ratio rows and memory case."""
    from tools.benchmark.benchmark import main

    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(["--preset", "tiny_m2f_swin", "--batch", "2", "--reps", "1", "--warmup", "1",
                 "--matmul-n", "128", "--modes", "network", "memory",
                 "--variant", "MODEL.COMPILE.ENABLED", "True", "MODEL.COMPILE.BACKEND", "eager",
                 "--json", str(out_json), "--md", str(out_md)]) == 0
    (sec,) = json.loads(out_json.read_text())["presets"]
    assert sec["impls"] == ["ours", "variant", "peer"]
    assert sec["variant_options"] == ["MODEL.COMPILE.ENABLED", "True", "MODEL.COMPILE.BACKEND", "eager"]
    assert {(r["impl"], r["batch"]) for r in sec["rows"]} == {(i, b) for i in sec["impls"] for b in (1, 2)}
    assert [(q["case"], q["batch"]) for q in sec["variant_ratios"]] == [("network", 1), ("network", 2)]
    for q in sec["variant_ratios"]:
        assert abs(q["variant_over_ours_latency"] * q["speedup_variant_vs_ours"] - 1) < 1e-9
        assert q["speedup_variant_vs_peer"] > 0
    assert [m["impl"] for m in sec["memory"]] == ["ours", "variant", "peer"]
    assert "| tiny_m2f_swin | MODEL.COMPILE.ENABLED True MODEL.COMPILE.BACKEND eager | network | 1 |" \
        in out_md.read_text()


def test_benchmark_variant_arguments_checked():
    from tools.benchmark.benchmark import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--preset", "tiny_m2f_swin", "--variant", "MODEL.COMPILE.ENABLED"])
    with pytest.raises(SystemExit):
        parse_args(["--preset", "tiny_m2f_swin", "--warmup", "0", "--variant", "MODEL.COMPILE.ENABLED", "True"])


def test_every_model_preset_config_names_its_architecture():
    """Each preset's config builds through build_cfg from the repository's configs (fast: no
    model); the slow test above runs every model."""
    from tools.benchmark.families import cfg_for
    from tools.benchmark.presets import PRESETS

    expected = {"maskformer": "MaskFormer", "segmenter": "Segmenter", "restr": "ReSTR"}
    for name, preset in PRESETS.items():
        if preset.family == "data":
            continue
        cfg = cfg_for(preset)
        assert cfg.MODEL.META_ARCHITECTURE == expected[preset.family], name
        assert (cfg.MODEL.DEVICE, cfg.MODEL.WEIGHTS) == ("cpu", ""), name
    decoders = {n: cfg_for(PRESETS[n]).MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
                for n in ("m2f_r50_semantic", "mf_r50_semantic", "m2f_swin_t_panoptic")}
    assert decoders == {"m2f_r50_semantic": "MultiScaleMaskedTransformerDecoder",
                        "mf_r50_semantic": "StandardTransformerDecoder",
                        "m2f_swin_t_panoptic": "MultiScaleMaskedTransformerDecoder"}
    assert cfg_for(PRESETS["m2f_swin_t_panoptic"]).MODEL.SWIN.EMBED_DIM == 96
    assert cfg_for(PRESETS["restr_p8"]).MODEL.VIT.PATCH_SIZE == 8


def test_benchmark_variant_rows_and_ratios(tmp_path):
    """--variant, fast: our tiny model again with a switch, timed beside ours (no peer)."""
    from tools.benchmark.benchmark import main

    out_json = tmp_path / "bench.json"
    assert main(["--preset", "tiny_m2f_swin", "--no-peer", "--batch", "1", "--reps", "1", "--warmup", "1",
                 "--matmul-n", "64", "--modes", "network", "--variant", "MODEL.CHANNELS_LAST.ENABLED", "True",
                 "--json", str(out_json)]) == 0
    (sec,) = json.loads(out_json.read_text())["presets"]
    assert sec["impls"] == ["ours", "variant"]
    assert sec["variant_options"] == ["MODEL.CHANNELS_LAST.ENABLED", "True"]
    assert {r["impl"] for r in sec["rows"]} == {"ours", "variant"}
    for q in sec["variant_ratios"]:
        assert abs(q["variant_over_ours_latency"] * q["speedup_variant_vs_ours"] - 1) < 1e-9


def _cpu(monkeypatch, features):
    from segmentation_core import precision

    support = precision.CpuBf16Support("Test CPU 9000", tuple(features), "test", "AVX2")
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: support)


def test_benchmark_bf16_without_native_bf16_reports_instead_of_timing(tmp_path, monkeypatch, capsys):
    """--dtype bfloat16 on a CPU without avx512_bf16/amx_bf16: a message, no figures, exit 2."""
    from tools.benchmark.benchmark import main

    _cpu(monkeypatch, [])
    out_json = tmp_path / "bench.json"
    assert main(["--preset", "tiny_m2f_swin", "--dtype", "bfloat16", "--json", str(out_json)]) == 2
    msg = capsys.readouterr().out
    assert "bfloat16 not timed" in msg and "Test CPU 9000" in msg and "--allow-emulated" in msg
    assert "avx512_bf16" in msg and "amx_bf16" in msg
    assert not out_json.exists()


def test_benchmark_bf16_emulated_is_labelled(tmp_path, monkeypatch):
    """--dtype bfloat16 --allow-emulated: our bf16 model is the variant, every bf16 figure says EMULATED."""
    from tools.benchmark.benchmark import main

    _cpu(monkeypatch, [])
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    assert main(["--preset", "tiny_m2f_swin", "--no-peer", "--batch", "1", "--reps", "1", "--warmup", "0",
                 "--matmul-n", "64", "--modes", "network", "flops", "--dtype", "bfloat16", "--allow-emulated",
                 "--json", str(out_json), "--md", str(out_md)]) == 0
    (sec,) = json.loads(out_json.read_text())["presets"]
    assert sec["impls"] == ["ours", "variant"]
    assert sec["variant_options"] == ["MODEL.INFERENCE_DTYPE", "bfloat16",
                                      "MODEL.INFERENCE_DTYPE_ALLOW_EMULATED", "True"]
    assert "EMULATED" in sec["variant_label"]
    md = out_md.read_text()
    assert "| variant [EMULATED bf16] |" in md and "[bfloat16 autocast EMULATED" in md
    # most of the bf16 model's matmul/conv work runs in bf16; the deformable sampling heads stay float32
    by_dtype = sec["variant_gflop_by_dtype"]
    assert by_dtype["bfloat16"] > 4 * by_dtype["float32"] > 0, by_dtype
    assert "FLOPs by input dtype: bfloat16" in md


def test_benchmark_bf16_native_label_and_arguments(monkeypatch):
    from tools.benchmark.benchmark import bf16_variant, parse_args

    _cpu(monkeypatch, ["amx_bf16"])
    assert bf16_variant("bfloat16", False) == (["MODEL.INFERENCE_DTYPE", "bfloat16"],
                                               "bfloat16 autocast (native: amx_bf16)")
    assert bf16_variant("float32", False) == ([], "")
    with pytest.raises(SystemExit):
        parse_args(["--preset", "tiny_m2f_swin", "--allow-emulated"])
    with pytest.raises(SystemExit):
        parse_args(["--preset", "tiny_m2f_swin", "--dtype", "bfloat16", "--variant", "MODEL.CHANNELS_LAST.ENABLED", "True"])


def test_flops_by_dtype_follows_autocast():
    import torch

    from tools.benchmark.flops import flops_by_dtype

    linear, conv = torch.nn.Linear(64, 32), torch.nn.Conv2d(3, 8, 3)
    x, image = torch.randn(8, 64), torch.randn(1, 3, 10, 10)
    macs = 8 * 64 * 32 + 8 * 8 * 8 * 27 + 5 * 4 * 6 * 7  # linear, conv (8x8 output), einsum

    def run(dtype):
        def fn():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
                linear(x), conv(image), torch.einsum("bqc,bchw->bqhw", torch.randn(1, 5, 4), torch.randn(1, 4, 6, 7))
        return fn

    assert flops_by_dtype(run("bfloat16")) == {"bfloat16": pytest.approx(2 * macs / 1e9)}
    assert flops_by_dtype(run("float32")) == {"float32": pytest.approx(2 * macs / 1e9)}

    def under_inference_mode():
        with torch.inference_mode():
            linear(x)

    with pytest.raises(RuntimeError, match="not torch.inference_mode"):
        flops_by_dtype(under_inference_mode)


def test_profile_splits_matmul_class_time_from_the_rest():
    """--profile: each op's self time is either a matmul/conv/attention kernel or "other"; the
    two add up to the total, and the reports print both with the rest's largest ops."""
    import torch

    from tools.benchmark.report import format_table, to_markdown
    from tools.benchmark.runner import MATMUL_CLASS_OPS, profile_top_ops

    linear, conv = torch.nn.Linear(256, 256), torch.nn.Conv2d(8, 8, 3)
    x, image = torch.randn(512, 256), torch.randn(2, 8, 32, 32)

    def fn():
        with torch.no_grad():
            y = linear(x).softmax(-1)
            return (y * 2.0).sum(), conv(image).relu()

    prof = profile_top_ops(fn, top=40)
    ops = {o["op"]: o["self_cpu_ms"] for o in prof["top_ops"]}
    other = {o["op"] for o in prof["top_other_ops"]}
    assert "aten::addmm" in ops and "aten::_softmax" in ops and "aten::mul" in ops
    assert {"aten::_softmax", "aten::mul", "aten::sum"} <= other and not other & MATMUL_CLASS_OPS
    assert prof["matmul_class_ms"] >= ops["aten::addmm"] > 0 and prof["other_ms"] >= ops["aten::_softmax"] > 0
    assert prof["matmul_class_ms"] + prof["other_ms"] == pytest.approx(prof["total_self_cpu_ms"])
    assert prof["matmul_class_ms"] == pytest.approx(sum(v for k, v in ops.items() if k in MATMUL_CLASS_OPS))

    report = {"machine": {"cpu": "test", "threads": 1, "torch": torch.__version__, "cores": 1,
                          "loadavg_before": 0.0, "loadavg_after": 0.0,
                          "matmul": {"median_gflops": 1.0, "n": 64}},
              "command": "x", "presets": [{"preset": "p", "rows": [], "ratios": [], "variant_ratios": [],
                                           "memory": [], "profile": {"network_b1_ours": prof}}]}
    for text in (format_table(report), to_markdown(report)):
        assert "Profile p network_b1_ours (self CPU, total" in text
        assert f"matmul/conv/attention kernels {prof['matmul_class_ms']:.1f} ms" in text
        assert f"other {prof['other_ms']:.1f} ms" in text
    assert "aten::_softmax" in format_table(report).split("matmul/conv/attention kernels")[1]


def test_cpu_time_pair_smoke(tmp_path):
    from tools.benchmark.cpu_time import main as cpu_main

    out = tmp_path / "cpu.json"
    assert cpu_main(["--preset", "tiny_m2f_swin", "--network-reps", "2", "--train-reps", "1",
                     "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"network", "train"}
    for case in res.values():
        assert len(case["ours"]["cpu_ms"]) == len(case["peer"]["cpu_ms"]) >= 1
        assert all(t > 0 for t in case["ours"]["cpu_ms"] + case["peer"]["cpu_ms"])
        assert case["speedup_cpu_median"] > 0
    with pytest.raises(ValueError, match="no peer"):
        cpu_main(["--preset", "segmenter_vit_s_linear", "--network-reps", "1", "--train-reps", "0"])


def test_matmul_rate_in_another_dtype():
    """bf16_check.sh reads the bf16 / float32 matmul rates through the same function."""
    import torch

    from tools.benchmark.flops import matmul_gflops

    for dtype in (torch.float32, torch.bfloat16):
        rate = matmul_gflops(32, reps=3, dtype=dtype)
        assert rate["n"] == 32 and rate["best_gflops"] >= rate["median_gflops"] > 0
