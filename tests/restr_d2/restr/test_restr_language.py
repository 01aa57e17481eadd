"""Tokenisation (official rules, fixture token ids), bad text, word-vector files, position
encoding, and the language-encoder registry."""
import numpy as np
import pytest
import torch

from restr_d2.modeling.language import GloVeTransformerEncoder, WordTokenizer, split_words
from restr_d2.modeling.language.position_encoding import sinusoidal_position_encoding
from restr_d2.modeling.language.word_vectors import load_glove_text, load_word_vectors


def _vocab(small):
    return (small.root / "restr_small" / "vocabulary.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def tok(small):
    return WordTokenizer(_vocab(small), 20)


def test_fixture_token_ids(tok, small):
    sentences = small.fx["keys"]["sentences"]
    ids = tok(sentences)
    assert ids == small.fx["keys"]["texts"]
    assert torch.equal(torch.tensor(ids), small.fx["io"]["texts"])


def test_model_tokenizes_sentences_like_fixture(small):
    model = small.build()
    tokens = model.encoder_l.tokenize(small.fx["keys"]["sentences"])
    assert torch.equal(tokens["input_ids"], small.fx["io"]["texts"])


def test_official_split_rules():
    # separators are kept as tokens (unstripped), lower-cased; a final "." is dropped
    assert split_words("Ornate wooden swivel, marching.") == ["ornate", "wooden", "swivel", ", ", "marching"]
    # only an exact "." is dropped: " ." (space + dot) stays
    assert split_words("a cat .") == ["a", "cat", " ."]
    assert split_words("  The  MAN  ") == ["the", "man"]


def test_padding_left_and_truncation(tok):
    ids = tok.encode("yellow")
    assert ids == [0] * 19 + [7]
    long = " ".join(["yellow"] * 30)
    assert tok.encode(long) == [7] * 20


@pytest.mark.parametrize("bad", ["", "   ", "\t\n", "...", ".", "?!,", "🙂🙂", "\x00\x07"])
def test_bad_sentences_raise_value_error(tok, bad):
    with pytest.raises(ValueError, match="referring expression"):
        tok.encode(bad)


def test_non_string_raises_type_error(tok):
    with pytest.raises(TypeError):
        tok.encode(None)
    with pytest.raises(TypeError):
        tok("a single string instead of a list")


def test_defined_results_for_odd_text(tok):
    unk = tok.unk_id
    # unknown and non-ASCII words -> <unk>
    assert tok.encode("zzzz café yellow")[-3:] == [unk, unk, 7]
    # an emoji between words is a separator token -> <unk>
    assert tok.encode("yellow 🙂 wooden")[-3:] == [7, unk, 41]
    # control characters act as spaces
    assert tok.encode("yellow\x00wooden\x1b") == tok.encode("yellow wooden")
    # emoji/control characters around a word do not break it
    assert tok.encode("\x07yellow") == tok.encode("yellow")


def test_vocabulary_must_start_with_pad():
    with pytest.raises(ValueError, match="<pad>"):
        WordTokenizer(["<unk>", "<pad>"])
    with pytest.raises(ValueError, match="<unk>"):
        WordTokenizer(["<pad>", "a"])


def test_position_encoding_matches_official(small):
    pe = sinusoidal_position_encoding(20, 300)
    # same formula and order of operations as the official code; the float32 sin/cos/exp kernels
    # differ by an ulp between CPUs (bit-identical on some, 6e-8 apart on others)
    torch.testing.assert_close(pe[None], small.fx["io"]["pos_emb_l"], rtol=0, atol=1e-6)
    with pytest.raises(ValueError):
        sinusoidal_position_encoding(20, 301)


def test_glove_text_format(tmp_path):
    txt = tmp_path / "vectors.txt"
    txt.write_text("yellow 1 2 3 0\nwooden 4 5 6 0\nnew york 7 8 9 0\n")
    words, table = load_glove_text(str(txt))
    assert words == ["yellow", "wooden", "new york"]
    assert table.dtype == np.float32 and table.shape == (3, 4)
    # no vocabulary file: specials first (zero vectors), then the file's words
    vocab, vecs = load_word_vectors(str(txt))
    assert vocab[:4] == ["<pad>", "<go>", "<eos>", "<unk>"] and vocab[4:] == words
    assert not vecs[:4].any() and np.array_equal(vecs[4], [1, 2, 3, 0])
    # with a vocabulary: rows follow it, missing words are zero
    voc = tmp_path / "vocab.txt"
    voc.write_text("<pad>\n<go>\n<eos>\n<unk>\nwooden\nmissing\nyellow\n")
    vocab, vecs = load_word_vectors(str(txt), str(voc))
    assert vocab[4:] == ["wooden", "missing", "yellow"]
    assert np.array_equal(vecs[4], [4, 5, 6, 0]) and not vecs[5].any() and np.array_equal(vecs[6], [1, 2, 3, 0])
    enc = GloVeTransformerEncoder(vocab=vocab, d_model=12, word_vectors=torch.from_numpy(vecs), d_lang=4,
                                  num_layers=1, num_heads=1, max_tokens=4)
    assert torch.equal(enc.embedding.weight[6].detach(), torch.tensor([1.0, 2.0, 3.0, 0.0]))
    out = enc(**enc.tokenize(["yellow wooden"]))
    assert out.features.shape == (1, 4, 12)
    assert out.valid.tolist() == [[False, False, True, True]]


def test_npy_needs_matching_vocabulary(tmp_path, small):
    with pytest.raises(ValueError, match="VOCAB_FILE"):
        load_word_vectors(str(small.root / "restr_small" / "glove.npy"))
    voc = tmp_path / "vocab.txt"
    voc.write_text("<pad>\n<unk>\n")
    with pytest.raises(ValueError, match="one row per vocabulary line"):
        load_word_vectors(str(small.root / "restr_small" / "glove.npy"), str(voc))


def test_pad_mask_keeps_pad_tokens_out_of_attention(small):
    """With mask_pad_tokens, features of real tokens ignore whatever sits at pad positions;
    with the official setting (no mask) pads are attended and change them."""
    vocab = _vocab(small)
    torch.manual_seed(0)
    enc = GloVeTransformerEncoder(vocab=vocab, d_model=16, d_lang=12, num_layers=2, num_heads=2,
                                  max_tokens=8, mask_pad_tokens=True).eval()
    ids = torch.tensor([[0, 0, 0, 0, 0, 3, 7, 41]])
    results = {}
    for masked in (True, False):
        enc.mask_pad_tokens = masked
        with torch.no_grad():
            enc.embedding.weight[0].zero_()
            a = enc(ids)
            enc.embedding.weight[0].normal_()  # perturb what the pad positions hold
            b = enc(ids)
        results[masked] = (a.features[0, 5:], b.features[0, 5:])
        assert a.valid.tolist() == [[False] * 5 + [True] * 3]
    assert torch.allclose(*results[True], atol=1e-6)
    assert not torch.allclose(*results[False], atol=1e-3)
    enc.mask_pad_tokens = True
    with pytest.raises(ValueError, match="only <pad>"):
        enc(torch.zeros(1, 8, dtype=torch.long))


def test_describe_lists_unknown_and_truncated_words(tok):
    """``describe`` says what the ids of ``encode`` mean: the words that became <unk> and the
    ones cut beyond T."""
    sentence = "yellow zebra " + " ".join(["yellow"] * 21)
    described = tok.describe(sentence)
    ids = tok.encode(sentence)
    assert [t["text"] for t in described["tokens"]][:3] == ["yellow", "zebra", "yellow"]
    assert len(described["tokens"]) == 20 and described["truncated"] == ["yellow"] * 3
    for t, i in zip(described["tokens"], ids):
        assert t["unknown"] == (i == tok.unk_id)
        assert t["token"] == tok.vocab[i]
    assert [t["text"] for t in described["tokens"] if t["unknown"]] == ["zebra"]
    with pytest.raises(ValueError, match="no word"):
        tok.describe("🙂")


def test_masked_self_attention_qkv_gradient_assembled_in_one_copy():
    """The fusion's and the GloVe encoder's attention split q, k, v as unbind(2) + transpose:
    bit for bit the official permute + unbind results and gradients, one gradient copy fewer."""
    from restr_d2.modeling.language.blocks import MaskedSelfAttention, key_padding_to_attn_mask
    from tests.helpers.autograd import assert_same_forward_and_gradients, fused_qkv_reference

    torch.manual_seed(0)
    attn = MaskedSelfAttention(24, 3).train()
    x = torch.randn(2, 6, 24)
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])

    def official(t):
        q, k, v = fused_qkv_reference(attn.qkv(t), 3)
        out = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=key_padding_to_attn_mask(valid), scale=attn.scale)
        return attn.proj(out.transpose(1, 2).reshape(t.shape))

    nodes, official_nodes = assert_same_forward_and_gradients(attn, lambda t: attn(t, valid), official, x)
    assert nodes["PermuteBackward0"] == official_nodes["PermuteBackward0"] - 1
