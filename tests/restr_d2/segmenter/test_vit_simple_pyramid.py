"""D2ViTSimpleFeaturePyramid: a plain ViT as the multi-scale backbone of Mask2Former."""
import pytest
import torch

from segmentation_core.config import build_cfg
from restr_d2.modeling.backbone import D2ViTSimpleFeaturePyramid, VisionTransformer


def _pyramid(patch, out_features=("res2", "res3", "res4", "res5")):
    vit = VisionTransformer(image_size=4 * patch, patch_size=patch, embed_dim=32, depth=1, num_heads=2, num_classes=0,
                            layer_scale_init=1e-5, norm_eps=1e-6, pos_embed_grid=(4, 4), pos_embed_interp="bicubic")
    return D2ViTSimpleFeaturePyramid(vit=vit, out_channels=16, out_features=out_features).eval()


@pytest.mark.parametrize("patch", [14, 16])
def test_levels_have_their_strides(patch):
    model = _pyramid(patch)
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        out = model(x)
    spec = model.output_shape()
    for name, stride in [("res2", 4), ("res3", 8), ("res4", 16), ("res5", 32)]:
        assert out[name].shape == (2, 16, 96 // stride, 64 // stride), name
        assert spec[name].stride == stride and spec[name].channels == 16
    assert model.size_divisibility == 32
    keys = list(model.state_dict())
    assert all(k.startswith(("vit.", "stages.")) for k in keys) and "vit.blocks.0.ls1.gamma" in keys


def test_stride16_level_is_the_vit_token_map_for_patch16():
    """Patch 16 needs no resampling: res4 is the last block's tokens through the 1x1 + 3x3 convs."""
    model = _pyramid(16, out_features=("res4",))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        tokens = model.vit.forward_features(x)[:, 1:].transpose(1, 2).reshape(1, 32, 4, 4)
        assert torch.allclose(model(x)["res4"], model.stages["res4"](tokens), atol=1e-6)


def test_unknown_level_is_an_error():
    with pytest.raises(ValueError, match="not pyramid levels"):
        _pyramid(14, out_features=("res6",))


def test_config_builds_the_mask2former_backbone():
    from detectron2.modeling import build_backbone

    cfg = build_cfg("configs/shapes/mask2former_dinov2_s14_panoptic.yaml",
                    ["MODEL.VIT.DEPTH", "1", "MODEL.VIT.EMBED_DIM", "64", "MODEL.VIT.NUM_HEADS", "1"])
    backbone = build_backbone(cfg)
    assert isinstance(backbone, D2ViTSimpleFeaturePyramid)
    assert backbone.vit.patch_size == 14 and backbone.vit.grid_size == (37, 37)
    assert backbone.vit.norm.eps == 1e-6 and {k: v.channels for k, v in backbone.output_shape().items()} == {
        "res2": 128, "res3": 128, "res4": 128, "res5": 128}
