"""ReferringEvaluator against hand-computed values, empty-mask conventions, and gathering."""
import json

import pytest
import torch

from restr_d2.evaluation import ReferringEvaluator, mask_intersection_union, referring_metrics


def _mask(h, w, box):
    m = torch.zeros(h, w, dtype=torch.bool)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = True
    return m


def _sample(pred_box, gt_box, h=10, w=10):
    prob = _mask(h, w, pred_box).float() * 0.9 + 0.05  # 0.95 inside, 0.05 outside
    return {"gt_mask_orig": _mask(h, w, gt_box), "image_id": 1}, {"ref_seg": prob, "ref_score": torch.tensor(0.9)}


def test_hand_computed_metrics(tmp_path):
    # sample A: pred 4x4 at (0,0), gt 4x4 at (0,2): I = 4*2 = 8, U = 16 + 16 - 8 = 24, IoU 1/3
    # sample B: pred == gt 5x2: I = U = 10, IoU 1
    # sample C: pred 2x2 inside gt 2x5: I = 4, U = 10, IoU 0.4
    # sample D: pred 3x3, gt 3x3 shifted by 1 row: I = 6, U = 12, IoU 0.5
    samples = [
        _sample((0, 4, 0, 4), (0, 4, 2, 6)),
        _sample((1, 6, 1, 3), (1, 6, 1, 3)),
        _sample((0, 2, 0, 2), (0, 2, 0, 5)),
        _sample((0, 3, 0, 3), (1, 4, 0, 3)),
    ]
    ev = ReferringEvaluator("toy", distributed=False, output_dir=str(tmp_path))
    ev.reset()
    for inp, out in samples:
        ev.process([inp], [out])
    res = ev.evaluate()["referring"]
    assert res["num_samples"] == 4
    assert res["oIoU"] == pytest.approx(100 * (8 + 10 + 4 + 6) / (24 + 10 + 10 + 12))  # 50.0
    assert res["mIoU"] == pytest.approx(100 * (1 / 3 + 1 + 0.4 + 0.5) / 4)
    assert res["Prec@0.5"] == pytest.approx(50.0)  # IoU >= 0.5: B, D (0.5 counts)
    assert res["Prec@0.6"] == pytest.approx(25.0)
    assert res["Prec@0.7"] == res["Prec@0.8"] == res["Prec@0.9"] == pytest.approx(25.0)
    per_sample = json.load(open(tmp_path / "referring_per_sample.json"))
    assert [(r["I"], r["U"]) for r in per_sample] == [(8, 24), (10, 10), (4, 10), (6, 12)]


def test_empty_ground_truth_conventions():
    # empty GT and empty prediction: IoU 1, adds nothing to the cumulative sums
    # empty GT and non-empty prediction: I = 0, U = |pred|, IoU 0
    res = referring_metrics([0, 0, 5], [0, 4, 10])
    assert res["oIoU"] == pytest.approx(100 * 5 / 14)
    assert res["mIoU"] == pytest.approx(100 * (1 + 0 + 0.5) / 3)
    assert res["Prec@0.5"] == pytest.approx(100 * 2 / 3)
    assert referring_metrics([0], [0])["oIoU"] == 100.0
    assert "oIoU" not in referring_metrics([], [])

    ev = ReferringEvaluator(distributed=False)
    ev.reset()
    empty = torch.zeros(6, 7, dtype=torch.bool)
    ev.process([{"gt_mask_orig": empty}], [{"ref_seg": torch.full((6, 7), 0.2)}])
    ev.process([{"gt_mask_orig": empty}], [{"ref_seg": torch.full((6, 7), 0.7)}])
    res = ev.evaluate()["referring"]
    assert res["mIoU"] == pytest.approx(50.0) and res["oIoU"] == pytest.approx(0.0)


def test_threshold_and_errors():
    gt = _mask(4, 4, (0, 2, 0, 2))
    prob = torch.zeros(4, 4)
    prob[0:2, 0:2] = 0.5  # exactly the threshold: not foreground (ref_seg > threshold)
    ev = ReferringEvaluator(distributed=False, mask_threshold=0.5)
    ev.reset()
    ev.process([{"gt_mask_orig": gt}], [{"ref_seg": prob}])
    assert ev._records[0] == {"I": 0, "U": 4}
    with pytest.raises(KeyError, match="gt_mask_orig"):
        ev.process([{}], [{"ref_seg": prob}])
    with pytest.raises(KeyError, match="ref_seg"):
        ev.process([{"gt_mask_orig": gt}], [{"sem_seg": prob}])
    with pytest.raises(ValueError, match="original image resolution"):
        mask_intersection_union(torch.zeros(3, 3, dtype=torch.bool), gt)


def test_distributed_gather(monkeypatch):
    """Records of all workers are merged on the main process; other ranks return {}."""
    from detectron2.utils import comm

    other_rank = [{"I": 3, "U": 4}, {"I": 0, "U": 5}]
    monkeypatch.setattr(comm, "synchronize", lambda: None)
    monkeypatch.setattr(comm, "gather", lambda data, dst=0: [data, other_rank])
    monkeypatch.setattr(comm, "is_main_process", lambda: True)
    ev = ReferringEvaluator(distributed=True)
    ev.reset()
    inp, out = _sample((0, 2, 0, 2), (0, 2, 0, 2))
    ev.process([inp], [out])
    res = ev.evaluate()["referring"]
    assert res["num_samples"] == 3
    assert res["oIoU"] == pytest.approx(100 * (4 + 3 + 0) / (4 + 4 + 5))
    monkeypatch.setattr(comm, "is_main_process", lambda: False)
    assert ev.evaluate() == {}
