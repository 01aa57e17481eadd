"""tools/benchmark/eval_backends.py: the metric kernels the evaluators can use agree with each
other and with the tool's direct numpy PQ on its synthetic data."""
import json

import pytest

from tools.benchmark.eval_backends import main


def test_pq_backends_match_the_numpy_reference_and_ap_backends_agree(tmp_path, capsys):
    out = tmp_path / "eval.json"
    results = main(["--images", "3", "--size", "48", "--seed", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    pq = results["pq"]
    assert 0.0 < pq["reference"]["pq"] < 1.0
    assert "seconds" in pq["hotcoco"], pq["hotcoco"]  # the default EVAL.PANOPTIC_BACKEND is installed
    for backend in ("hotcoco", "panopticapi"):
        if "missing" not in pq[backend]:
            assert pq[backend]["pq"] == pytest.approx(pq["reference"]["pq"], abs=1e-9)
            assert pq[backend]["max_abs_diff"] < 1e-9
    ap = results["ap"]
    assert 0.0 <= ap["pycocotools"]["stats"][0] <= 1.0
    if "stats" in ap["faster_coco_eval"]:
        assert ap["faster_coco_eval"]["stats"] == pytest.approx(ap["pycocotools"]["stats"], abs=1e-6)
    assert "PQ reference (numpy)" in capsys.readouterr().out
