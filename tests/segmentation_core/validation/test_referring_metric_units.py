"""Referring metrics are percentages (0-100), like PQ / mIoU / AP, in the results and in the
log line, which writes the unit out."""
import torch

from restr_d2.evaluation import ReferringEvaluator


def test_referring_metrics_are_percent_in_results_and_log(log_lines):
    lines = log_lines("restr_d2.evaluation.referring_evaluation")
    ev = ReferringEvaluator("refs", distributed=False)
    ev.reset()
    gt = torch.zeros(4, 4, dtype=torch.bool)
    gt[:2] = True  # 8 pixels
    pred = torch.zeros(4, 4)
    pred[:1] = 1.0  # 4 of them: IoU 0.5
    ev.process([{"gt_mask_orig": gt}], [{"ref_seg": pred}])
    res = ev.evaluate()["referring"]
    assert res["oIoU"] == 50.0 and res["mIoU"] == 50.0 and res["Prec@0.5"] == 100.0 and res["Prec@0.6"] == 0.0
    [line] = [m for m in lines if m.startswith("Referring evaluation")]
    assert "(1 sentences), in percent: oIoU 50.00%, mIoU 50.00%, Prec@0.5 100.00%" in line
