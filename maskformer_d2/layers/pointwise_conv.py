"""1x1 convolution as one batched matrix product on CPU (the pixel decoders' 1/4-scale 1x1 convs)."""
import torch
from detectron2.layers import Conv2d

from segmentation_core.acceleration import capturing_graph

__all__ = ["PointwiseConv2d"]


class PointwiseConv2d(Conv2d):
    """detectron2's :class:`Conv2d` (with its ``norm`` and ``activation``) restricted to 1x1
    kernels, stride 1, no padding, dilation or groups. (B, C_in, H, W) -> (B, C_out, H, W); the
    same parameters and state-dict keys as ``Conv2d``.

    On CPU, for a contiguous NCHW input, the convolution is computed as ``weight (C_out, C_in)
    @ x (B, C_in, H*W)`` in one ``baddbmm``. Why: with more than one thread ATen sends 1x1
    convolutions of batches under 16 to oneDNN, whose NCHW 1x1 kernel and its backward gain
    nothing from the second thread on our CPUs: Mask2Former's ``mask_features`` at 2 x 256 x 128
    x 128, forward + backward, 295 ms at 2 threads as a convolution, 186 ms as the product; at
    1 thread ATen itself computes it as this product (docs/benchmarks.md, tenth session). GPU
    inputs, channels-last inputs (``MODEL.CHANNELS_LAST``: oneDNN's own layout) and ONNX export
    or any graph capture (``capturing_graph``: the exported graph keeps its ``Conv`` node) run
    the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        for key, expected in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
            if kwargs.setdefault(key, expected) not in (expected, (expected, expected)):
                raise ValueError(f"PointwiseConv2d is a 1x1 convolution: {key} must be {expected}, "
                                 f"got {kwargs[key]!r} (use detectron2.layers.Conv2d)")
        super().__init__(in_channels, out_channels, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cpu" or x.dim() != 4 or x.shape[1] != self.in_channels or not x.is_contiguous()
                or torch.jit.is_scripting() or capturing_graph()):
            # (a wrong channel count gets the convolution's own error, which names both counts)
            return super().forward(x)
        b, c, h, w = x.shape
        weight = self.weight.view(self.out_channels, c).expand(b, -1, -1)
        flat = x.view(b, c, h * w)
        if self.bias is None:
            y = torch.bmm(weight, flat)
        else:
            y = torch.baddbmm(self.bias.view(1, -1, 1), weight, flat)
        y = y.view(b, self.out_channels, h, w)
        if self.norm is not None:
            y = self.norm(y)
        if self.activation is not None:
            y = self.activation(y)
        return y
