"""Full-size key listings, checkpoint loading/conversion and bad input."""
import json

import numpy as np
import pytest
import torch

from restr_d2.modeling.backbone import VisionTransformer
from restr_d2.modeling.backbone.timm_convert import convert_timm_vit, jax_vit_to_timm
from restr_d2.modeling.segmenter import Segmenter, SegmenterCheckpointer, convert_official_segmenter
from restr_d2.modeling.segmenter.checkpoint import ENCODER_ONLY_FLAG
from tests.helpers.segmenter_reference import KEYS, fixture_cfg, inputs, load_reference_model, max_diff, reference_weights


def _cfg_from_official(net_kwargs):
    cfg = fixture_cfg("linear" if net_kwargs["decoder"]["name"] == "linear" else "mask")
    v = cfg.MODEL.VIT
    v.IMAGE_SIZE = list(net_kwargs["image_size"])
    v.PATCH_SIZE, v.EMBED_DIM = net_kwargs["patch_size"], net_kwargs["d_model"]
    v.DEPTH, v.NUM_HEADS, v.DISTILLED = net_kwargs["n_layers"], net_kwargs["n_heads"], net_kwargs.get("distilled", False)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = net_kwargs["n_cls"]
    return cfg


@pytest.mark.parametrize("name", sorted(p.stem for p in KEYS.glob("*.json")))
def test_full_size_keys(name):
    ref = json.loads((KEYS / f"{name}.json").read_text())
    with torch.device("meta"):  # no memory, no init cost
        model = Segmenter(_cfg_from_official(ref["net_kwargs"]))
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(got.items()) == list(ref["state_dict"].items())
    assert sum(v.numel() for v in model.parameters()) == ref["num_params"]


def test_official_checkpoint_file_loads_strictly(tmp_path):
    sd = reference_weights()["mask"]["nontrivial"]
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": sd, "optimizer": {}, "n_cls": 5, "lr_scheduler": {}, "epoch": 3}, path)
    conv = convert_official_segmenter(torch.load(path, weights_only=True))
    torch.save({"model": conv}, tmp_path / "d2.pth")
    model = load_reference_model("mask", "init")
    SegmenterCheckpointer(model).load(str(tmp_path / "d2.pth"))
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


def test_class_count_mismatch_is_a_clear_error(tmp_path):
    sd = dict(reference_weights()["mask"]["init"])
    torch.save({"model": sd}, tmp_path / "w.pth")
    cfg = fixture_cfg("mask")
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 7
    model = Segmenter(cfg)
    with pytest.raises(ValueError, match=r"trained for 5 classes: set MODEL.SEM_SEG_HEAD.NUM_CLASSES: 5"):
        SegmenterCheckpointer(model).load(str(tmp_path / "w.pth"))
    # the explicit way out: an encoder-only conversion, decoder stays at init
    enc = convert_official_segmenter({"model": sd}, encoder_only=True)
    torch.save({"model": enc, ENCODER_ONLY_FLAG: True}, tmp_path / "enc.pth")
    SegmenterCheckpointer(model).load(str(tmp_path / "enc.pth"))
    assert torch.equal(model.encoder.pos_embed, sd["encoder.pos_embed"])
    # an encoder-only file without the flag is refused (no silent partial load)
    torch.save({"model": enc}, tmp_path / "enc_noflag.pth")
    with pytest.raises(ValueError, match="missing in the checkpoint"):
        SegmenterCheckpointer(model).load(str(tmp_path / "enc_noflag.pth"))


def test_pos_embed_resize_on_conversion():
    sd = reference_weights()["mask"]["init"]
    conv = convert_official_segmenter({"model": sd}, image_size=(80, 112), old_image_size=(64, 96))
    model = load_reference_model("mask", "init")
    expect = model.encoder.pos_embed_for_grid((5, 7))
    assert max_diff(conv["encoder.pos_embed"], expect) == 0.0
    with pytest.raises(ValueError, match="not square"):
        convert_official_segmenter({"model": sd}, image_size=(80, 112))


def test_image_smaller_than_one_patch():
    model = load_reference_model("mask", "init")
    x = inputs()["im_a"][:1, :, :10, :12]
    with pytest.raises(ValueError, match="positive multiple of the patch size"):
        model.encoder.forward_features(x)  # the plain ViT refuses with an explanation
    with torch.no_grad():  # Segmenter pads to one patch, as the official forward does
        got = model.segment(x)
        padded = torch.nn.functional.pad(x, (0, 4, 0, 6))
        feats = model.encoder.forward_features(padded)[:, 1:].transpose(1, 2).reshape(1, 192, 1, 1)
        expect = torch.nn.functional.interpolate(
            model.decoder({"vit": feats}), size=(16, 16), mode="bilinear", align_corners=False)[..., :10, :12]
    assert got.shape == (1, 5, 10, 12) and max_diff(got, expect) == 0.0


def _timm_to_jax(sd, depth):
    """Inverse of timm's npz loader, to build a synthetic AugReg-layout file."""
    D = sd["cls_token"].shape[-1]
    H = 3
    w = {"cls": sd["cls_token"], "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
         "embedding/kernel": sd["patch_embed.proj.weight"].permute(2, 3, 1, 0),
         "embedding/bias": sd["patch_embed.proj.bias"],
         "Transformer/encoder_norm/scale": sd["norm.weight"], "Transformer/encoder_norm/bias": sd["norm.bias"],
         "head/kernel": sd["head.weight"].T, "head/bias": sd["head.bias"]}
    for i in range(depth):
        b, p = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        m = b + "MultiHeadDotProductAttention_1/"
        w[b + "LayerNorm_0/scale"], w[b + "LayerNorm_0/bias"] = sd[p + "norm1.weight"], sd[p + "norm1.bias"]
        w[b + "LayerNorm_2/scale"], w[b + "LayerNorm_2/bias"] = sd[p + "norm2.weight"], sd[p + "norm2.bias"]
        for j, n in enumerate(("query", "key", "value")):
            w[m + n + "/kernel"] = sd[p + "attn.qkv.weight"][j * D:(j + 1) * D].T.reshape(D, H, D // H)
            w[m + n + "/bias"] = sd[p + "attn.qkv.bias"][j * D:(j + 1) * D].reshape(H, D // H)
        w[m + "out/kernel"] = sd[p + "attn.proj.weight"].T.reshape(H, D // H, D)
        w[m + "out/bias"] = sd[p + "attn.proj.bias"]
        for r in range(2):
            w[f"{b}MlpBlock_3/Dense_{r}/kernel"] = sd[f"{p}mlp.fc{r + 1}.weight"].T
            w[f"{b}MlpBlock_3/Dense_{r}/bias"] = sd[f"{p}mlp.fc{r + 1}.bias"]
    return {k: v.detach().numpy() for k, v in w.items()}


def test_timm_and_jax_conversion(tmp_path):
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    from functools import partial

    torch.manual_seed(0)
    # a 21k-style source: square 4x4 grid (64 px), 21 classes; LayerNorm eps 1e-5 as ours
    src = timm_vit.VisionTransformer(img_size=64, patch_size=16, embed_dim=192, depth=2, num_heads=3,
                                     num_classes=21, norm_layer=partial(torch.nn.LayerNorm, eps=1e-5)).eval()
    sd = {k: v for k, v in src.state_dict().items()}
    with pytest.raises(ValueError, match="21 classes, the model 1000"):
        convert_timm_vit(sd, image_size=(64, 96), patch_size=16)
    ours = VisionTransformer(image_size=(64, 96), patch_size=16, embed_dim=192, depth=2, num_heads=3).eval()
    conv = convert_timm_vit(sd, image_size=(64, 96), patch_size=16, head="reinit")
    ours.load_state_dict(conv, strict=True)
    # npz round trip through our JAX reader equals timm's own npz loader
    np.savez(tmp_path / "vit.npz", **_timm_to_jax(sd, 2))
    from_jax = jax_vit_to_timm(np.load(tmp_path / "vit.npz"))
    timm_loaded = timm_vit.VisionTransformer(img_size=64, patch_size=16, embed_dim=192, depth=2, num_heads=3,
                                             num_classes=21)
    timm_vit._load_weights(timm_loaded, str(tmp_path / "vit.npz"))
    for k, v in timm_loaded.state_dict().items():
        assert torch.equal(from_jax[k], v), k
    # on the square source grid the features equal timm's (pos_embed not resized)
    ours_sq = VisionTransformer(image_size=64, patch_size=16, embed_dim=192, depth=2, num_heads=3, num_classes=21)
    ours_sq.load_state_dict(convert_timm_vit(from_jax, image_size=(64, 64), patch_size=16, num_classes=21))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        d = max_diff(ours_sq.eval().forward_features(x), src.forward_features(x))
    print(f"DIFF timm forward_features: {d:.3g}")
    assert d < 1e-5
