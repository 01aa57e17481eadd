"""The export-friendly code paths equal the default ones (no export needed, fast)."""
import torch

from maskformer_d2.modeling.pixel_decoder.msdeformattn import MSDeformAttnTransformerEncoder
from restr_d2.modeling.backbone.vit import VisionTransformer


def test_reference_points_equal_linspace_construction():
    # the pixel decoder builds pixel centres with arange + 0.5 (exportable with a symbolic
    # size); the official construction is linspace(0.5, h - 0.5, h): bit-identical
    for h in list(range(1, 300)) + [511, 1024, 1999]:
        assert torch.equal(torch.arange(h, dtype=torch.float32) + 0.5,
                           torch.linspace(0.5, h - 0.5, h, dtype=torch.float32))
    shapes = [(3, 5), (6, 10), (1, 1)]
    ratios = torch.ones(2, 3, 2)
    ref = MSDeformAttnTransformerEncoder.get_reference_points(shapes, ratios, "cpu")
    expected = []
    for h, w in shapes:
        y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h), torch.linspace(0.5, w - 0.5, w), indexing="ij")
        expected.append(torch.stack((x.reshape(-1) / w, y.reshape(-1) / h), -1))
    expected = torch.cat(expected)[None, :, None].expand(2, -1, 3, -1)
    assert torch.equal(ref, expected)


def test_always_resized_pos_embed_is_identity_on_training_grid():
    torch.manual_seed(0)
    for interp in ("bilinear", "bicubic"):
        vit = VisionTransformer(image_size=(64, 96), patch_size=16, embed_dim=32, depth=1, num_heads=2,
                                num_classes=0, pos_embed_interp=interp).eval()
        x = torch.randn(2, 3, 64, 96)
        with torch.no_grad():
            default = vit.forward_features(x)
            vit.always_resize_pos_embed = True
            resized = vit.forward_features(x)
            # another grid: both rules resize
            y = torch.randn(1, 3, 32, 48)
            vit.always_resize_pos_embed = False
            other_default = vit.forward_features(y)
            vit.always_resize_pos_embed = True
            other_resized = vit.forward_features(y)
        assert torch.equal(default, resized), interp
        assert torch.equal(other_default, other_resized), interp


def test_other_grid_with_training_token_count_is_refused():
    import pytest

    from restr_d2.export import check_pos_embed_grid

    vit = VisionTransformer(image_size=(64, 64), patch_size=16, embed_dim=32, depth=1, num_heads=2, num_classes=0)
    check_pos_embed_grid(vit, 64, 64)  # the training grid
    check_pos_embed_grid(vit, 32, 96)  # another token count: both rules resize
    with pytest.raises(ValueError, match="token count"):
        check_pos_embed_grid(vit, 32, 128)  # 2x8 patches = the 4x4 training grid's 16 tokens
