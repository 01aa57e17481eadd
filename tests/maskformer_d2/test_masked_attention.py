"""The Mask2Former decoder's attention-mask resize (strided-slice bilinear downsampling)."""
import pytest
import torch
import torch.nn.functional as F

from maskformer_d2.modeling.transformer_decoder.masked_attention import downsample_bilinear


@pytest.mark.parametrize("src,dst", [
    ((128, 128), (16, 16)),  # the Mask2Former factors 8, 4, 2 (1/4 -> 1/32, 1/16, 1/8)
    ((128, 96), (32, 24)),
    ((64, 160), (32, 80)),
    ((48, 64), (8, 4)),  # different even factors per axis
    ((120, 90), (40, 30)),  # odd factor: F.interpolate
    ((100, 60), (30, 20)),  # not a whole factor: F.interpolate
    ((32, 32), (32, 32)),  # same size
])
def test_downsample_bilinear_equals_interpolate_bit_for_bit(src, dst):
    torch.manual_seed(0)
    x = torch.randn(2, 7, *src) * 30
    x[0, 0, 0, :4] = torch.tensor([0.0, -0.0, 1e-30, -1e-30])
    got = downsample_bilinear(x, dst)
    ref = F.interpolate(x, size=dst, mode="bilinear", align_corners=False)
    assert got.shape == ref.shape
    assert torch.equal(got, ref)
    # the attention mask built from it (sigmoid < 0.5) is then the same too
    assert torch.equal(got.sigmoid() < 0.5, ref.sigmoid() < 0.5)
