"""MODEL.MASK_FORMER.MATCHED_MASK_GRAD: in training, the Mask2Former decoder computes every
query's mask logits without autograd and the criterion recomputes the matched queries' masks
with it. Same losses and gradients as the masks-with-autograd path (up to float summation
order); inference outputs unchanged."""
import pytest
import torch

from maskformer_d2.modeling.criterion import SetCriterion
from maskformer_d2.modeling.matcher import HungarianMatcher
from maskformer_d2.modeling.transformer_decoder.masked_attention import MultiScaleMaskedTransformerDecoder


def _decoder(matched_mask_grad):
    torch.manual_seed(0)
    return MultiScaleMaskedTransformerDecoder(
        16, num_classes=5, hidden_dim=32, num_queries=12, nheads=4, dim_feedforward=64, dec_layers=3,
        pre_norm=False, mask_dim=16, enforce_input_project=False, matched_mask_grad=matched_mask_grad)


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(2, 16, 4 * 2**i, 5 * 2**i, generator=g) for i in range(3)]
    mask_features = torch.randn(2, 16, 32, 40, generator=g)
    targets = []
    for n in (3, 1):  # unequal counts: the criterion pads the per-image matched embeddings
        masks = torch.zeros(n, 128, 160)
        for k in range(n):
            y, x0 = torch.randint(0, 90, (2,), generator=g).tolist()
            masks[k, y:y + 30, x0:x0 + 50] = 1
        targets.append({"labels": torch.randint(0, 5, (n,), generator=g), "masks": masks})
    return x, mask_features, targets


def _criterion():
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=300)
    return SetCriterion(5, matcher, {}, 0.1, ["labels", "masks"], num_points=300)


def _train_step(matched_mask_grad):
    decoder, criterion = _decoder(matched_mask_grad).train(), _criterion()
    x, mask_features, targets = _inputs()
    x = [t.requires_grad_() for t in x]
    mask_features.requires_grad_()
    torch.manual_seed(2)  # the matcher's and the criterion's point draws
    outputs = decoder(x, mask_features)
    losses = criterion(outputs, targets)
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in decoder.named_parameters()}
    grads.update(mask_features=mask_features.grad, **{f"x{i}": t.grad for i, t in enumerate(x)})
    return outputs, losses, grads


def test_matched_mask_path_gives_the_same_losses_and_gradients():
    full_out, full_losses, full_grads = _train_step(False)
    lazy_out, lazy_losses, lazy_grads = _train_step(True)
    assert sorted(lazy_losses) == sorted(full_losses) and len(full_losses) == 12  # 4 layers x 3 losses
    for k in full_losses:
        torch.testing.assert_close(lazy_losses[k], full_losses[k], rtol=1e-6, atol=1e-6, msg=k)
    assert full_grads.keys() == lazy_grads.keys()
    for k in full_grads:
        assert full_grads[k] is not None and lazy_grads[k] is not None, k
        torch.testing.assert_close(lazy_grads[k], full_grads[k], rtol=1e-5, atol=1e-6, msg=k)
    # the unmatched queries' masks get no loss gradient either way: the mask features' gradient
    # is not zero (it comes from the matched masks)
    assert lazy_grads["mask_features"].abs().sum() > 0
    # the mask logits themselves are the same numbers, computed without autograd
    torch.testing.assert_close(lazy_out["pred_masks"], full_out["pred_masks"].detach(), rtol=0, atol=0)
    assert full_out["pred_masks"].grad_fn is not None
    for layer in [lazy_out] + lazy_out["aux_outputs"]:
        assert layer["pred_masks"].grad_fn is None and not layer["pred_masks"].requires_grad
        assert layer["pred_mask_embed"].shape == (2, 12, 16) and layer["pred_mask_embed"].requires_grad
        assert layer["mask_features"].shape == (2, 16, 32, 40)


def test_criterion_recomputes_exactly_the_matched_rows():
    criterion = _criterion()
    g = torch.Generator().manual_seed(3)
    embed, features = torch.randn(2, 12, 16, generator=g), torch.randn(2, 16, 32, 40, generator=g)
    outputs = {"pred_masks": torch.einsum("bqc,bchw->bqhw", embed, features), "pred_mask_embed": embed,
               "mask_features": features}
    indices = [(torch.tensor([7, 2, 9]), torch.tensor([0, 1, 2])), (torch.tensor([4]), torch.tensor([0]))]
    got = criterion._matched_mask_logits(outputs, indices)
    want = torch.stack([outputs["pred_masks"][0, 7], outputs["pred_masks"][0, 2], outputs["pred_masks"][0, 9],
                        outputs["pred_masks"][1, 4]])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # an image without targets contributes no rows
    none = [(torch.tensor([], dtype=torch.int64), torch.tensor([], dtype=torch.int64)), indices[1]]
    torch.testing.assert_close(criterion._matched_mask_logits(outputs, none), want[3:], rtol=1e-5, atol=1e-5)


def test_all_predictions_matched_masks_in_one_product(monkeypatch):
    """The criterion recomputes the matched masks of all 4 predictions in one product (one
    feature-gradient product in backward), after every layer's matching and point draws, and
    each prediction's rows are its own matched queries' masks."""
    calls = []
    original = SetCriterion._matched_masks_from_embeddings

    def spy(embeds, features, indices):
        out = original(embeds, features, indices)
        calls.append((len(embeds), [m.shape[0] for m in out], embeds, features, indices, out))
        return out

    monkeypatch.setattr(SetCriterion, "_matched_masks_from_embeddings", staticmethod(spy))
    decoder, criterion = _decoder(True).train(), _criterion()
    x, mask_features, targets = _inputs()
    torch.manual_seed(2)
    criterion(decoder(x, mask_features.requires_grad_()), targets)
    with_grad = [c for c in calls if c[-1][0].requires_grad]
    assert len(with_grad) == 1 and with_grad[0][0] == 4  # one product for the 4 predictions
    # and no other: the points are sampled on the rows of pred_masks, not on recomputed masks
    assert len(calls) == 1
    assert with_grad[0][1] == [4, 4, 4, 4]  # 3 + 1 targets matched in each prediction
    _, _, embeds, features, indices, out = with_grad[0]
    for embed, layer_indices, masks in zip(embeds, indices, out):
        want = torch.cat([torch.einsum("qc,chw->qhw", embed[b, src], features[b])
                          for b, (src, _) in enumerate(layer_indices)])
        torch.testing.assert_close(masks, want, rtol=1e-5, atol=1e-5)


def test_points_are_sampled_on_the_rows_of_pred_masks(monkeypatch):
    """The criterion samples each prediction's points on the matched rows of the decoder's
    (gradient-free) pred_masks, as the official criterion samples on its pred_masks; the
    matched masks it recomputes with autograd agree with those rows to rounding (a product with
    fewer rows may round differently: 1 ulp here)."""
    decoder, criterion = _decoder(True).train(), _criterion()
    x, mask_features, targets = _inputs()
    outputs = decoder(x, mask_features)
    targets = criterion._float_masks_once(targets)
    sampled_on = []
    monkeypatch.setattr(criterion, "sample_points", lambda logits: sampled_on.append(logits) or
                        type(criterion).sample_points(criterion, logits))
    for layer in [outputs] + outputs["aux_outputs"]:
        indices = criterion.matcher(layer, targets)
        batch_idx, src_idx = criterion._src_permutation_idx(indices)
        criterion._sample_matched_points(layer, targets, indices)
        assert torch.equal(sampled_on.pop()[:, 0], layer["pred_masks"][batch_idx, src_idx])
        recomputed = criterion._matched_mask_logits(layer, indices)
        torch.testing.assert_close(recomputed.detach(), layer["pred_masks"][batch_idx, src_idx], rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["eval", "no_grad"])
def test_inference_outputs_carry_no_lazy_keys(mode):
    decoder = _decoder(True)
    x, mask_features, _ = _inputs()
    if mode == "eval":
        decoder.eval()
        out = decoder(x, mask_features)
    else:
        with torch.no_grad():
            out = decoder.train()(x, mask_features)
    assert set(out) == {"pred_logits", "pred_masks", "aux_outputs"}
    assert all(set(a) == {"pred_logits", "pred_masks"} for a in out["aux_outputs"])


def test_config_switch_and_log(caplog):
    from segmentation_core.config import build_cfg
    from maskformer_d2.modeling.meta_arch.mask_former_model import build_criterion
    from maskformer_d2.modeling.transformer_decoder.build import build_transformer_decoder

    cfg = build_cfg("configs/shapes/mask2former_R18_panoptic.yaml", [])
    assert cfg.MODEL.MASK_FORMER.MATCHED_MASK_GRAD is True
    assert build_transformer_decoder(cfg, 64, True).matched_mask_grad is True
    cfg = build_cfg("configs/shapes/mask2former_R18_panoptic.yaml", ["MODEL.MASK_FORMER.MATCHED_MASK_GRAD", "False"])
    assert build_transformer_decoder(cfg, 64, True).matched_mask_grad is False
    with caplog.at_level("INFO"):
        build_criterion(cfg, 5)
    assert "every query's masks with autograd (MODEL.MASK_FORMER.MATCHED_MASK_GRAD False)" in caplog.text


def test_bool_target_masks_converted_once_with_the_same_losses(monkeypatch):
    """On CPU the criterion converts bool / uint8 target masks to float32 once per step (the
    matcher and the mask loss of every prediction read them): the same losses bit for bit as
    float targets, one conversion per image instead of two per prediction, and the caller's
    targets keep their masks."""
    decoder, criterion = _decoder(True).train(), _criterion()
    x, mask_features, targets = _inputs()
    with torch.no_grad():
        outputs = decoder(x, mask_features)
    bool_targets = [dict(t, masks=t["masks"].bool()) for t in targets]
    conversions = []
    real_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        if self.dtype == torch.bool:
            conversions.append(tuple(self.shape))
        return real_to(self, *args, **kwargs)

    torch.manual_seed(2)
    ref = criterion(outputs, targets)
    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    torch.manual_seed(2)
    got = criterion(outputs, bool_targets)
    monkeypatch.undo()
    assert got.keys() == ref.keys() and len(got) == 12
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    assert conversions == [(3, 128, 160), (1, 128, 160)]  # once per image, not per prediction
    assert all(t["masks"].dtype == torch.bool for t in bool_targets)


def test_matched_target_points_read_the_masks_in_place_with_the_stack_values():
    """The criterion reads each image's GT masks at the points of the prediction matched to
    each target, without stacking the matched masks: the same labels bit for bit as the stack
    (images without targets, unequal counts); masks of different sizes or a target matched twice
    take the stack path (padding / duplicates)."""
    criterion = _criterion()
    g = torch.Generator().manual_seed(3)
    targets = [{"masks": (torch.rand(n, 40, 56, generator=g) > 0.5).float()} for n in (4, 0, 2)]
    indices = [(torch.tensor([7, 1, 3]), torch.tensor([2, 0, 3])), (torch.tensor([], dtype=torch.int64),) * 2,
               (torch.tensor([5, 0]), torch.tensor([1, 0]))]
    coords = torch.rand(5, 300, 2, generator=g)
    like = torch.zeros(5, 8, 8)
    stack = SetCriterion._matched_target_masks(targets, indices, like)
    ref = torch.nn.functional.grid_sample(stack[:, None], 2 * coords[:, :, None] - 1, align_corners=False)[:, 0, :, 0]
    got = SetCriterion._matched_target_points(targets, indices, coords, like)
    assert torch.equal(got, ref) and 0 < got.mean() < 1

    calls = []
    real = SetCriterion._matched_target_points
    criterion._matched_target_points = lambda *a: calls.append(1) or real(*a)
    criterion.sample_points = lambda logits: coords[: logits.shape[0]]
    src = torch.zeros(5, 8, 8)
    for case_targets, case_indices, in_place in (
        (targets, indices, True),
        ([targets[0], targets[1], {"masks": torch.zeros(2, 40, 60)}], indices, False),  # two sizes: padded stack
        (targets, [indices[0], indices[1], (torch.tensor([5, 0]), torch.tensor([1, 1]))], False),  # matched twice
    ):
        calls.clear()
        _, labels = criterion._sample_matched_points({}, case_targets, case_indices, src)
        stack = SetCriterion._matched_target_masks(case_targets, case_indices, src)
        ref = torch.nn.functional.grid_sample(stack[:, None], 2 * coords[:, :, None] - 1, align_corners=False)[:, 0, :, 0]
        assert torch.equal(labels, ref)
        assert calls == ([1] if in_place else [])
