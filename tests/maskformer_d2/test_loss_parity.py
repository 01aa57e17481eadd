"""Matcher + criterion parity with the official MaskFormer / Mask2Former losses.

Fixtures: tests/fixtures/m2f_loss, tests/fixtures/mf_loss (see their README.md).
"""
import math

import pytest
import torch

from detectron2.structures import Instances
from maskformer_d2.modeling.criterion import SetCriterion
from maskformer_d2.modeling.matcher import HungarianMatcher
from maskformer_d2.modeling.meta_arch.mask_former_model import MaskFormer

ATOL = 1e-5


def _load(fixtures_dir, folder, name):
    return torch.load(fixtures_dir / folder / name, weights_only=True)


def _m2f_criterion(weight_dict, num_points, mask_loss_type="sigmoid_ce"):
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=num_points, mask_cost_type=mask_loss_type)
    return SetCriterion(10, matcher, weight_dict, 0.1, ["labels", "masks"], num_points, 3.0, 0.75, mask_loss_type)


def _record_matches(criterion, layer_order):
    """Wraps the matcher so each layer's indices are kept, in call order."""
    calls = []
    forward = criterion.matcher.forward

    def recording_forward(outputs, targets):
        indices = forward(outputs, targets)
        calls.append(indices)
        return indices

    criterion.matcher.forward = recording_forward
    return lambda: dict(zip(layer_order, calls))


def _assert_losses(got, ref):
    assert set(got) == set(ref)
    diffs = {k: abs(got[k].item() - ref[k].item()) for k in ref}
    assert max(diffs.values()) <= ATOL, diffs
    return max(diffs.values())


def _assert_indices(got, ref):
    for layer, per_image in ref.items():
        for (src, tgt), (ref_src, ref_tgt) in zip(got[layer], per_image):
            assert src.tolist() == ref_src.tolist(), layer
            assert tgt.tolist() == ref_tgt.tolist(), layer


def test_m2f_loss_seeded_12544_points(fixtures_dir, monkeypatch):
    outputs = _load(fixtures_dir, "m2f_loss", "outputs.pt")
    targets = _load(fixtures_dir, "m2f_loss", "targets.pt")
    ref = _load(fixtures_dir, "m2f_loss", "loss.pt")
    criterion = _m2f_criterion(ref["weight_dict"], 12544)
    matches = _record_matches(criterion, ref["layer_order"])

    rand_calls = []
    real_rand = torch.rand

    def recording_rand(*size, **kwargs):
        out = real_rand(*size, **kwargs)
        rand_calls.append(list(out.shape))
        return out

    monkeypatch.setattr(torch, "rand", recording_rand)
    torch.manual_seed(ref["seed"])
    losses = criterion(outputs, targets)
    monkeypatch.undo()

    assert rand_calls == [list(s) for s in ref["rand_calls"]]
    _assert_indices(matches(), ref["matcher_indices"])
    _assert_losses(losses, ref["losses"])


def _replay_criterion(fixtures_dir):
    """The 1024-point Mask2Former criterion with the official run's sampled points injected:
    (outputs, targets, reference, criterion, the matcher points not drawn yet)."""
    outputs = _load(fixtures_dir, "m2f_loss", "outputs.pt")
    targets = _load(fixtures_dir, "m2f_loss", "targets.pt")
    ref = _load(fixtures_dir, "m2f_loss", "loss_replay_1024pts.pt")
    criterion = _m2f_criterion(ref["weight_dict"], 1024)
    layers = iter(ref["layer_order"])
    matcher_points = [ref["matcher_point_coords"][name][b][None] for name in ref["layer_order"] for b in range(2)]
    criterion.matcher.draw_points = lambda image_index, device: matcher_points.pop(0)
    criterion.sample_points = lambda mask_logits: ref["criterion_point_coords"][next(layers)]
    return outputs, targets, ref, criterion, matcher_points


def test_m2f_loss_replay_stored_points(fixtures_dir):
    """Deterministic variant: the 1024-point run with its sampled points injected."""
    outputs, targets, ref, criterion, matcher_points = _replay_criterion(fixtures_dir)
    matches = _record_matches(criterion, ref["layer_order"])

    torch.manual_seed(999)  # any seed: no random draw may be used
    losses = criterion(outputs, targets)

    assert not matcher_points
    _assert_indices(matches(), ref["matcher_indices"])
    _assert_losses(losses, ref["losses"])
    weighted = {k: v * ref["weight_dict"][k] for k, v in losses.items()}
    _assert_losses(weighted, ref["weighted_losses"])


def test_mf_loss_full_resolution(fixtures_dir):
    outputs = _load(fixtures_dir, "mf_loss", "outputs.pt")
    targets = _load(fixtures_dir, "m2f_loss", "targets.pt")  # identical to the official mf_loss/targets.pt
    ref = _load(fixtures_dir, "mf_loss", "loss.pt")
    matcher = HungarianMatcher(1, 20.0, 1.0, num_points=None, mask_cost_type="focal")  # full resolution
    criterion = SetCriterion(10, matcher, ref["weight_dict"], 0.1, ["labels", "masks"], None, mask_loss_type="focal")
    matches = _record_matches(criterion, ref["layer_order"])
    losses = criterion(outputs, targets)
    _assert_indices(matches(), ref["matcher_indices"])
    _assert_losses(losses, ref["losses"])
    assert ref["num_masks"] == 5.0


class _FixedHead(torch.nn.Module):
    def __init__(self, outputs, num_classes=10):
        super().__init__()
        self.outputs = outputs
        self.num_classes = num_classes

    def forward(self, features):
        return self.outputs


class _NoBackbone(torch.nn.Module):
    size_divisibility = 32

    def forward(self, x):
        return {}


def test_meta_arch_training_weights_losses(fixtures_dir):
    """Training forward: prepare_targets pads the GT masks, losses are weighted and complete."""
    outputs, targets, ref, criterion, _ = _replay_criterion(fixtures_dir)
    model = MaskFormer(
        backbone=_NoBackbone(), sem_seg_head=_FixedHead(outputs), criterion=criterion, num_queries=16,
        object_mask_threshold=0.8, overlap_threshold=0.8, metadata=None, size_divisibility=32,
        sem_seg_postprocess_before_inference=True, pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0],
    ).train()
    batch = []
    for (h, w), t in zip([(120, 150), (100, 160)], targets):
        inst = Instances((h, w), gt_classes=t["labels"], gt_masks=t["masks"][:, :h, :w])
        assert inst.gt_masks.sum() == t["masks"].sum()  # the fixture masks are zero in the pad
        batch.append({"image": torch.zeros(3, h, w), "instances": inst})
    losses = model(batch)
    _assert_losses(losses, ref["weighted_losses"])


def _grid_centres(size):
    """(1, size*size, 2) (x, y) coordinates of the pixel centres of a size x size grid."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], -1)[None]


def test_point_focal_loss_hand_computed():
    """POINT_LOSS "focal": focal + dice on sampled points, checked on a 2x2 case by hand.

    Points are the 4 pixel centres, so sampling returns the logits unchanged.
    """
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]], [[-4.0, -4.0], [-4.0, -4.0]]]])  # (1, Q=2, 2, 2)
    class_logits = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])  # (1, Q=2, K+1=3)
    target = {"labels": torch.tensor([0]), "masks": torch.tensor([[[1, 0], [0, 1]]], dtype=torch.bool)}
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=4, mask_cost_type="focal")
    criterion = SetCriterion(2, matcher, {}, 0.1, ["labels", "masks"], 4, 3.0, 0.75, mask_loss_type="focal")
    matcher.draw_points = lambda image_index, device: _grid_centres(2)
    criterion.sample_points = lambda mask_logits: _grid_centres(2).expand(len(mask_logits), -1, -1)

    indices = matcher({"pred_logits": class_logits, "pred_masks": logits}, [target])
    assert indices[0][0].tolist() == [0] and indices[0][1].tolist() == [0]
    losses = criterion({"pred_logits": class_logits, "pred_masks": logits}, [target])

    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    x, t = [2.0, -1.0, 0.0, 3.0], [1, 0, 0, 1]
    focal = 0.0
    for xi, ti in zip(x, t):
        p = sig(xi)
        focal += -0.25 * (1 - p) ** 2 * math.log(p) if ti else -0.75 * p**2 * math.log(1 - p)
    probs = [sig(v) for v in x]
    dice = 1 - (2 * (probs[0] + probs[3]) + 1) / (sum(probs) + 2 + 1)
    # CE with the no-object weight: query 0 -> class 0 (weight 1), query 1 -> no object (0.1).
    ce0 = -math.log(math.exp(1) / (math.exp(1) + 2))
    ce1 = -math.log(math.exp(2) / (2 + math.exp(2)))
    ce = (1.0 * ce0 + 0.1 * ce1) / 1.1
    assert losses["loss_mask"].item() == pytest.approx(focal / 4, abs=1e-6)
    assert losses["loss_dice"].item() == pytest.approx(dice, abs=1e-6)
    assert losses["loss_ce"].item() == pytest.approx(ce, abs=1e-6)
    # The same set-up with the official sigmoid CE is a different number.
    criterion.mask_loss_type = "sigmoid_ce"
    ce_loss = criterion({"pred_logits": class_logits, "pred_masks": logits}, [target])["loss_mask"].item()
    bce = sum(-math.log(sig(xi)) if ti else -math.log(1 - sig(xi)) for xi, ti in zip(x, t)) / 4
    assert ce_loss == pytest.approx(bce, abs=1e-6)


def test_focal_point_loss_on_fixture_points(fixtures_dir):
    """Focal variant on the stored 1024-point replay: equals focal computed elementwise in float64."""
    outputs = _load(fixtures_dir, "m2f_loss", "outputs.pt")
    targets = _load(fixtures_dir, "m2f_loss", "targets.pt")
    ref = _load(fixtures_dir, "m2f_loss", "loss_replay_1024pts.pt")
    criterion = _m2f_criterion(ref["weight_dict"], 1024, mask_loss_type="focal")
    coords = ref["criterion_point_coords"]["final"]
    criterion.sample_points = lambda mask_logits: coords
    indices = [tuple(pair) for pair in ref["matcher_indices"]["final"]]
    got = criterion.loss_masks(outputs, targets, indices, 5.0)

    src = torch.cat([outputs["pred_masks"][b, s] for b, (s, _) in enumerate(indices)])
    tgt = torch.cat([targets[b]["masks"][t].float() for b, (_, t) in enumerate(indices)])
    grid = (2 * coords - 1)[:, :, None].double()
    x = torch.nn.functional.grid_sample(src[:, None].double(), grid, align_corners=False)[:, 0, :, 0]
    y = torch.nn.functional.grid_sample(tgt[:, None].double(), grid, align_corners=False)[:, 0, :, 0]
    p = torch.sigmoid(x)
    focal = -(0.25 * y * (1 - p) ** 2 * torch.log(p) + 0.75 * (1 - y) * p**2 * torch.log(1 - p))
    assert abs(got["loss_mask"].item() - focal.mean(1).sum().item() / 5.0) <= ATOL
    # Dice does not depend on the switch: equal to the official replay value.
    assert abs(got["loss_dice"].item() - ref["losses"]["loss_dice"].item()) <= ATOL
    assert abs(got["loss_mask"].item() - ref["losses"]["loss_mask"].item()) > 1e-2


def test_empty_weight_is_persistent_buffer():
    criterion = SetCriterion(4, HungarianMatcher(), {}, 0.25)
    state = criterion.state_dict()
    assert list(state) == ["empty_weight"]
    assert state["empty_weight"].tolist() == [1.0, 1.0, 1.0, 1.0, 0.25]


def test_image_without_targets():
    outputs = {"pred_logits": torch.randn(2, 4, 3), "pred_masks": torch.randn(2, 4, 8, 8, requires_grad=True)}
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32, dtype=torch.bool)},
        {"labels": torch.tensor([1]), "masks": torch.ones(1, 32, 32, dtype=torch.bool)},
    ]
    criterion = SetCriterion(2, HungarianMatcher(num_points=16), {}, 0.1, num_points=16)
    losses = criterion(outputs, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_mask"].backward()
    assert outputs["pred_masks"].grad[1].abs().sum() > 0 and outputs["pred_masks"].grad[0].abs().sum() == 0


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="mask_cost_type"):
        HungarianMatcher(mask_cost_type="bce")
    with pytest.raises(ValueError, match="all matcher costs are 0"):
        HungarianMatcher(0, 0, 0)
    with pytest.raises(ValueError, match="unknown losses"):
        SetCriterion(2, HungarianMatcher(), {}, 0.1, losses=["boxes"])


def test_point_loss_config_switch():
    """MODEL.MASK_FORMER.POINT_LOSS selects the point loss (and matcher cost); default is official."""
    from detectron2.config import get_cfg

    from maskformer_d2 import add_maskformer2_config
    from maskformer_d2.modeling.meta_arch.mask_former_model import build_criterion

    cfg = add_maskformer2_config(get_cfg())
    default = build_criterion(cfg, 10)
    assert (default.mask_loss_type, default.matcher.mask_cost_type) == ("sigmoid_ce", "sigmoid_ce")
    assert default.num_points == default.matcher.num_points == 112 * 112
    cfg.MODEL.MASK_FORMER.POINT_LOSS = "focal"
    focal = build_criterion(cfg, 10)
    assert (focal.mask_loss_type, focal.matcher.mask_cost_type) == ("focal", "focal")
    assert focal.num_points == 112 * 112
    cfg.MODEL.MASK_FORMER.POINT_LOSS = "bce"
    with pytest.raises(ValueError, match="POINT_LOSS"):
        build_criterion(cfg, 10)
    cfg.MODEL.MASK_FORMER.POINT_LOSS = "sigmoid_ce"
    cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "MyDecoder"
    with pytest.raises(ValueError, match="TRANSFORMER_DECODER_NAME"):
        build_criterion(cfg, 10)


@pytest.mark.parametrize("bad", [0, -1])
def test_zero_or_negative_num_points_is_an_error_not_full_resolution(bad):
    with pytest.raises(ValueError, match="None for full-resolution"):
        HungarianMatcher(num_points=bad)
    with pytest.raises(ValueError, match="None for full-resolution"):
        SetCriterion(2, HungarianMatcher(), {}, 0.1, num_points=bad)
