"""MODEL.RESTR.FUSION.INPUT_NORM: a parameter-free LayerNorm on the projected fusion inputs (issue 18)."""
import pytest
import torch

from restr_d2.modeling.restr import ReSTR


def _model(small, input_norm):
    cfg = small.cfg()
    cfg.MODEL.RESTR.FUSION.INPUT_NORM = input_norm
    model = ReSTR(cfg).eval()
    model.load_state_dict(small.fx["state_dict"], strict=True)
    return model


def _block_inputs(model, images, sentences):
    """The (B, N + T, D) tokens the first visual-linguistic block receives."""
    seen = []
    handle = model.fusion_module.blocks_vl[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        out = model.predict(images, sentences)
    handle.remove()
    return seen[0], out


def test_layernorm_inputs_add_no_keys_and_enter_the_blocks_normalised(small):
    images, sentences = small.fx["images"], small.fx["keys"]["sentences"][:2]
    official = _model(small, "none")
    normed = _model(small, "layernorm")  # the official state dict loads strictly: no new keys
    assert list(normed.state_dict()) == list(official.state_dict())
    x_off, out_off = _block_inputs(official, images, sentences)
    x_ln, out_ln = _block_inputs(normed, images, sentences)
    N = out_off["patch_logits"].shape[-2] * out_off["patch_logits"].shape[-1]
    # official: small tokens (unit-norm inputs through a trunc-normal .02 projection)
    assert x_off[:, :N].norm(dim=-1).max() < 1.0
    # layernorm: the same tokens, each normalised to mean 0 and variance ~1 (norm ~sqrt(D))
    D = x_ln.shape[-1]
    expected = torch.nn.functional.layer_norm(x_off, (D,))
    vision = x_ln[:, :N]
    assert torch.allclose(vision, expected[:, :N], atol=1e-5)
    assert torch.allclose(vision.mean(-1), torch.zeros(()), atol=1e-5)
    assert vision.norm(dim=-1).min() > 0.95 * D**0.5
    # the language tokens too, except the pad tokens, which stay zero as in the official fusion
    tokens = normed.encoder_l.tokenize(list(sentences))
    valid = normed.encoder_l(**tokens).valid
    lang = x_ln[:, N:]
    assert torch.allclose(lang[valid], expected[:, N:][valid], atol=1e-5)
    assert (~valid).any() and torch.equal(lang[~valid], torch.zeros_like(lang[~valid]))
    # a different function of the same weights
    assert not torch.allclose(out_ln["pixel_logits"], out_off["pixel_logits"], atol=1e-3)


def test_unknown_input_norm_is_refused_with_the_choices(small):
    cfg = small.cfg()
    cfg.MODEL.RESTR.FUSION.INPUT_NORM = "l2"
    with pytest.raises(ValueError, match=r"MODEL.RESTR.FUSION.INPUT_NORM='l2'.*'none', 'layernorm'"):
        ReSTR(cfg)
