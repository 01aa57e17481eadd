"""Loading of vocabularies and word-vector tables for the GloVe language encoder.

Two file formats:

* the official pair: ``vocabulary_<name>.txt`` (one word per line, id = line number) and
  ``<name>_emb.npy`` (float32 ``(V, d)``, row i = vector of word i);
* GloVe text format: one ``word v1 v2 ... vd`` line per word (as in ``glove.840B.300d.txt``).
  With a vocabulary file, each vocabulary word takes its vector from the text file (words
  missing there get a zero vector, and their number is logged); without one, the vocabulary is
  ``<pad> <go> <eos> <unk>`` (zero vectors) followed by the file's words in file order.
"""
import logging
import os
from typing import List, Optional, Tuple

import numpy as np

from .tokenizer import SPECIAL_TOKENS

__all__ = ["load_vocabulary", "load_glove_text", "load_word_vectors"]

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


def load_word_vectors(
    embedding_file: str, vocab_file: Optional[str] = None
) -> Tuple[List[str], np.ndarray]:
    """Vocabulary and (V, d) float32 vectors from the official .npy (+ vocabulary) or a GloVe
    text file (+ optional vocabulary). See the module docstring."""
    if not embedding_file:
        raise ValueError("no embedding file given (MODEL.RESTR.LANGUAGE.EMBEDDING_FILE)")
    ext = os.path.splitext(embedding_file)[1].lower()
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
    if vocab_file:
        vocab = load_vocabulary(vocab_file)
        index = {w: i for i, w in enumerate(words)}
        vectors = np.zeros((len(vocab), table.shape[1]), dtype=np.float32)
        missing = 0
        for i, w in enumerate(vocab):
            j = index.get(w)
            if j is None:
                missing += int(w not in SPECIAL_TOKENS)
            else:
                vectors[i] = table[j]
        logger.info(
            f"GloVe text {embedding_file}: {len(vocab)} vocabulary words, {missing} without a "
            "vector (zero-initialised)"
        )
        return vocab, vectors
    keep = [i for i, w in enumerate(words) if w not in SPECIAL_TOKENS]
    vocab = list(SPECIAL_TOKENS) + [words[i] for i in keep]
    vectors = np.concatenate(
        [np.zeros((len(SPECIAL_TOKENS), table.shape[1]), np.float32), table[keep]], axis=0
    )
    logger.info(f"GloVe text {embedding_file}: vocabulary of {len(vocab)} words (4 special)")
    return vocab, vectors
