"""PointwiseConv2d: detectron2's 1x1 Conv2d computed as one batched product on CPU."""
import pytest
import torch
from detectron2.layers import Conv2d, get_norm

from maskformer_d2.layers import PointwiseConv2d


def _forward_backward(module, x):
    xi = x.clone().requires_grad_()
    y = module(xi)
    y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
    return [y.detach(), xi.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("batch,channels,bias,norm", [(2, 24, False, "GN"), (2, 48, True, ""), (1, 48, True, "")])
def test_same_outputs_and_gradients_as_the_convolution(batch, channels, bias, norm):
    torch.manual_seed(0)
    pointwise = PointwiseConv2d(channels, 32, bias=bias, norm=get_norm(norm, 32))
    conv = Conv2d(channels, 32, kernel_size=1, bias=bias, norm=get_norm(norm, 32))
    assert pointwise.state_dict().keys() == conv.state_dict().keys()  # official checkpoints load unchanged
    conv.load_state_dict(pointwise.state_dict())
    x = torch.randn(batch, channels, 12, 20)
    threads = torch.get_num_threads()
    try:
        # one thread: ATen computes the 1x1 convolution as this product itself, so the output
        # and the input gradient are the same bits; the weight gradient sums the batch in
        # another order
        torch.set_num_threads(1)
        got, ref = _forward_backward(pointwise, x), _forward_backward(conv, x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert len(got) == len(ref) == 2 + len(list(conv.parameters()))
    for g, r in zip(got[2:], ref[2:]):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-6 * r.abs().max().item())


def test_product_runs_on_contiguous_cpu_input_and_the_convolution_otherwise(monkeypatch):
    calls = []
    real_conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *a, **k: calls.append(1) or real_conv2d(*a, **k))
    torch.manual_seed(0)
    m = PointwiseConv2d(8, 4, bias=True)
    x = torch.randn(2, 8, 6, 5)
    y = m(x)
    assert calls == []  # the product, not the convolution
    y_cl = m(x.contiguous(memory_format=torch.channels_last))  # oneDNN's own layout: the convolution
    assert calls == [1]
    torch.testing.assert_close(y_cl, y, rtol=1e-6, atol=1e-6)
    assert m(x[:0]).shape == (0, 4, 6, 5)  # an empty batch
    with pytest.raises(RuntimeError, match="expected input.* to have 8 channels, but got 7"):
        m(x[:, :7].contiguous())  # a wrong channel count: the convolution's error, not a reshape error


def test_rejects_anything_but_a_plain_1x1_convolution():
    for kwargs in ({"kernel_size": 3}, {"stride": 2}, {"padding": 1}, {"groups": 2}, {"dilation": (2, 2)}):
        key = next(iter(kwargs))
        with pytest.raises(ValueError, match=f"{key} must be"):
            PointwiseConv2d(8, 4, **kwargs)
    assert PointwiseConv2d(8, 4, kernel_size=(1, 1)).weight.shape == (4, 8, 1, 1)


def test_pixel_decoders_use_it_for_their_fine_1x1_convolutions():
    from detectron2.layers import ShapeSpec

    from maskformer_d2.modeling.pixel_decoder.fpn import BasePixelDecoder
    from maskformer_d2.modeling.pixel_decoder.msdeformattn import MSDeformAttnPixelDecoder

    shapes = {f"res{i}": ShapeSpec(channels=16 * i, stride=2 ** i) for i in range(2, 6)}
    m2f = MSDeformAttnPixelDecoder(
        input_shape=shapes, conv_dim=32, mask_dim=32, norm="GN", transformer_dropout=0.0, transformer_nheads=4,
        transformer_dim_feedforward=64, transformer_enc_layers=1, transformer_in_features=["res3", "res4", "res5"],
        common_stride=4,
    )
    assert isinstance(m2f.adapter_1, PointwiseConv2d) and isinstance(m2f.mask_features, PointwiseConv2d)
    mf = BasePixelDecoder(input_shape=shapes, conv_dim=32, mask_dim=32, norm="GN")
    assert all(isinstance(getattr(mf, f"adapter_{i}"), PointwiseConv2d) for i in (1, 2, 3))
