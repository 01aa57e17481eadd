"""The sine position encoding without a mask (every pixel counted, as the pixel decoders and
transformer decoders call it) equals the masked formula with nothing masked, bit for bit,
normalised or not, for any batch and non-square sizes; with a mask the counts restart."""
import math

import pytest
import torch

from maskformer_d2.layers.position_encoding import PositionEmbeddingSine


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("shape", [(1, 16, 16), (2, 37, 61), (3, 5, 200), (1, 128, 96)])
def test_unmasked_encoding_equals_the_masked_formula(normalize, shape):
    b, h, w = shape
    pe = PositionEmbeddingSine(64, normalize=normalize)
    x = torch.randn(b, 3, h, w)
    fast = pe(x)
    reference = pe(x, torch.zeros(b, h, w, dtype=torch.bool))
    assert fast.shape == (b, 128, h, w)
    assert torch.equal(fast, reference)
    assert fast.stride() == reference.stride()


def test_values_follow_the_formula_and_a_mask_changes_them():
    pe = PositionEmbeddingSine(4, temperature=10000)
    out = pe(torch.zeros(1, 1, 3, 5))
    # channel 0: sin(y / 1), channel 1: cos(y / 1), channel 2: sin(y / 100), ...; y, x 1-based
    assert out[0, 0, 2, 4].item() == pytest.approx(math.sin(3.0))
    assert out[0, 3, 2, 4].item() == pytest.approx(math.cos(3.0 / 100))
    assert out[0, 4, 2, 4].item() == pytest.approx(math.sin(5.0))
    mask = torch.zeros(1, 3, 5, dtype=torch.bool)
    mask[:, :, :2] = True
    masked = pe(torch.zeros(1, 1, 3, 5), mask)
    assert not torch.equal(masked, out)
    assert masked[0, 4, 0, 4].item() == pytest.approx(math.sin(3.0))  # x counts the unmasked pixels of its row
