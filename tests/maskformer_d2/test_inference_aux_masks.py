"""``aux_masks=False``: the inference network does not compute the earlier decoder layers'
full-size masks. The outputs inference reads (the last layer's logits and masks) and the
earlier layers' class logits are the same bits as with them."""
import pytest
import torch

from maskformer_d2.modeling.transformer_decoder import masked_attention
from maskformer_d2.modeling.transformer_decoder.masked_attention import (
    MultiScaleMaskedTransformerDecoder,
    attention_mask_taps,
    downsample_bilinear,
)
from maskformer_d2.modeling.transformer_decoder.standard import StandardTransformerDecoder


@pytest.mark.parametrize("src,dst,reads_all", [
    ((128, 128), (16, 16), False),  # factor 8 (1/4 -> 1/32)
    ((128, 128), (32, 32), False),  # factor 4
    ((128, 128), (64, 64), True),  # factor 2: every pixel is a tap
    ((48, 64), (8, 4), False),  # factors 6 and 16
    ((48, 64), (24, 16), False),  # factors 2 and 4: half the rows
    ((120, 90), (40, 30), True),  # odd factor: F.interpolate reads everything
    ((100, 60), (30, 20), True),  # not a whole factor
])
def test_taps_are_what_the_downsample_reads(src, dst, reads_all):
    torch.manual_seed(0)
    x = torch.randn(2, 5, *src)
    taps = attention_mask_taps(x, dst)
    if reads_all:
        assert taps is None
        return
    assert taps.shape == (2, 5, 2 * dst[0], 2 * dst[1])
    # resizing the taps by 2 gives the resize of the whole map, bit for bit
    assert torch.equal(downsample_bilinear(taps, dst), downsample_bilinear(x, dst))


def _masked_decoder():
    torch.manual_seed(0)
    return MultiScaleMaskedTransformerDecoder(
        16, num_classes=5, hidden_dim=32, num_queries=12, nheads=4, dim_feedforward=64, dec_layers=6,
        pre_norm=False, mask_dim=16, enforce_input_project=False).eval()


def _multi_scale_inputs(batch=2):
    g = torch.Generator().manual_seed(1)
    # 1/32, 1/16, 1/8 of a 256 x 320 image; mask features at 1/4: factors 8, 4, 2
    x = [torch.randn(batch, 16, 8 * 2**i, 10 * 2**i, generator=g) for i in range(3)]
    return x, torch.randn(batch, 16, 64, 80, generator=g)


@pytest.mark.parametrize("batch", [1, 2])
def test_masked_decoder_without_aux_masks_gives_the_same_outputs(batch, monkeypatch):
    decoder = _masked_decoder()
    x, mask_features = _multi_scale_inputs(batch)
    full_size = []
    einsum = torch.einsum

    def counting_einsum(eq, *ops):
        out = einsum(eq, *ops)
        full_size.append(tuple(out.shape[-2:]) == tuple(mask_features.shape[-2:]))
        return out

    monkeypatch.setattr(masked_attention.torch, "einsum", counting_einsum)
    with torch.no_grad():
        full = decoder(x, mask_features)
        calls_full = sum(full_size)
        full_size.clear()
        fast = decoder(x, mask_features, aux_masks=False)
        calls_fast = sum(full_size)
    assert torch.equal(fast["pred_logits"], full["pred_logits"])
    assert torch.equal(fast["pred_masks"], full["pred_masks"])
    assert len(fast["aux_outputs"]) == len(full["aux_outputs"]) == 6
    for a, b in zip(fast["aux_outputs"], full["aux_outputs"]):
        assert set(a) == {"pred_logits"}
        assert torch.equal(a["pred_logits"], b["pred_logits"])  # the attention masks were the same
    # 7 predictions: with aux masks all 7 at full size; without, the last and the two whose
    # attention mask is at 1/8 (factor 2 reads every pixel)
    assert calls_full == 7 and calls_fast == 3


def test_standard_decoder_without_aux_masks_gives_the_same_outputs():
    torch.manual_seed(0)
    decoder = StandardTransformerDecoder(
        16, True, num_classes=5, hidden_dim=32, num_queries=12, nheads=4, dropout=0.0, dim_feedforward=64,
        enc_layers=0, dec_layers=4, pre_norm=False, deep_supervision=True, mask_dim=16,
        enforce_input_project=False).eval()
    g = torch.Generator().manual_seed(1)
    x, mask_features = torch.randn(2, 16, 8, 10, generator=g), torch.randn(2, 16, 32, 40, generator=g)
    with torch.no_grad():
        full = decoder(x, mask_features)
        fast = decoder(x, mask_features, aux_masks=False)
    assert torch.equal(fast["pred_logits"], full["pred_logits"])
    assert torch.equal(fast["pred_masks"], full["pred_masks"])
    assert [set(a) for a in fast["aux_outputs"]] == [{"pred_logits"}] * 3
    for a, b in zip(fast["aux_outputs"], full["aux_outputs"]):
        assert torch.equal(a["pred_logits"], b["pred_logits"])


def test_criterion_refuses_predictions_without_aux_masks():
    """aux_masks=False is for inference: training on such outputs is a clear error."""
    from maskformer_d2.modeling.criterion import SetCriterion
    from maskformer_d2.modeling.matcher import HungarianMatcher

    decoder = _masked_decoder()
    x, mask_features = _multi_scale_inputs()
    with torch.no_grad():
        outputs = decoder(x, mask_features, aux_masks=False)
    criterion = SetCriterion(5, HungarianMatcher(2.0, 5.0, 5.0, num_points=50), {}, 0.1, ["labels", "masks"],
                             num_points=50)
    targets = [{"labels": torch.tensor([1]), "masks": torch.ones(1, 256, 320)}] * 2
    with pytest.raises(ValueError, match=r"predictions \[1, 2, 3, 4, 5, 6\].*aux_masks=False"):
        criterion(outputs, targets)
