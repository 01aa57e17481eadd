"""Word-level tokenisation of the official ReSTR (``utils/text_processing.py``) and the
sentence checks shared by every language encoder.

Official rule, reproduced exactly:

1. ``re.split(r"(\\W+)", sentence.strip())``: words *and* the separators between them;
2. keep the pieces whose ``strip()`` is non-empty, lower-cased (a separator such as ``", "``
   therefore becomes a token, unstripped, and maps to ``<unk>`` unless it is in the vocabulary);
3. drop the last piece if it is exactly ``"."``;
4. map unknown pieces to ``<unk>``;
5. keep the first ``T`` ids, and left-pad short sentences with ``<pad>`` (id 0).

Defined behaviour on bad text (``check_sentence``):

* not a ``str``: ``TypeError``.
* empty, whitespace-only, or without a single word character (``\\w``: letters of any script,
  digits, underscore), e.g. ``"..."`` or ``"🙂"``: ``ValueError``. There is nothing to refer to,
  and the official code would either crash (empty) or feed an all-``<unk>``/all-pad sentence.
* control characters (Unicode category ``Cc``, e.g. ``"\\x00"``, ``"\\x1b"``) are replaced by a
  space before splitting: they carry no meaning and would otherwise become ``<unk>`` tokens.
* non-ASCII letters are words like any other (``\\w`` is Unicode-aware); words missing from the
  vocabulary, emoji and other symbols between words become ``<unk>``.
* more than ``T`` tokens: truncated to the first ``T`` (official behaviour).
"""
import re
import unicodedata
from typing import Dict, List, Sequence

__all__ = [
    "PAD_TOKEN",
    "UNK_TOKEN",
    "SPECIAL_TOKENS",
    "check_sentence",
    "clean_sentence",
    "split_words",
    "WordTokenizer",
]

PAD_TOKEN = "<pad>"
GO_TOKEN = "<go>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
# first four lines of the official vocabulary files
SPECIAL_TOKENS = (PAD_TOKEN, GO_TOKEN, EOS_TOKEN, UNK_TOKEN)

_SPLIT_RE = re.compile(r"(\W+)")
_WORD_RE = re.compile(r"\w")


def clean_sentence(sentence: str) -> str:
    """NFKC-normalise (full-width letters, decomposed accents), replace control characters
    (category Cc) by spaces and drop invisible format characters (Cf: zero-width space, BOM,
    direction marks), as BERT-style tokenizers do, so both tokenizers see the same words."""
    sentence = unicodedata.normalize("NFKC", sentence)
    out = []
    for c in sentence:
        cat = unicodedata.category(c)
        if cat == "Cc":
            out.append(" ")
        elif cat != "Cf":
            out.append(c)
    return "".join(out)


def check_sentence(sentence) -> str:
    """Validate one referring expression and return it with control characters removed.

    Raises:
        TypeError: not a string.
        ValueError: empty, whitespace-only, no word character at all, or not encodable
            Unicode (lone surrogates).
    """
    if not isinstance(sentence, str):
        raise TypeError(
            f"a referring expression must be a str, got {type(sentence).__name__}; "
            "pass one sentence per image (or a list of str to the predictor)"
        )
    try:
        sentence.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"referring expression {sentence!r} is not valid Unicode text ({e.reason} at "
            f"position {e.start}: a lone surrogate); decode the input text properly"
        ) from None
    cleaned = clean_sentence(sentence)
    if not cleaned.strip():
        raise ValueError(
            f"empty referring expression {sentence!r}: give a sentence naming the object to "
            "segment, e.g. 'the man on the left'"
        )
    if _WORD_RE.search(cleaned) is None:
        raise ValueError(
            f"referring expression {sentence!r} contains no word (only punctuation, symbols "
            "or emoji): give a sentence naming the object to segment"
        )
    return cleaned


def split_words(sentence: str) -> List[str]:
    """Official word split (steps 1-3 of the module docstring), after ``check_sentence``."""
    sentence = check_sentence(sentence)
    pieces = _SPLIT_RE.split(sentence.strip())
    words = [w.lower() for w in pieces if len(w.strip()) > 0]
    if words and words[-1] == ".":
        words = words[:-1]
    return words


class WordTokenizer:
    """Vocabulary lookup with the official padding/truncation to ``max_tokens`` (T).

    ``vocab`` is the list of words in id order; the official files start with
    ``<pad>``, ``<go>``, ``<eos>``, ``<unk>``. ``<pad>`` must be id 0 (the embedding's padding
    row, and the official fusion zeroes features where the id is 0).
    """

    def __init__(self, vocab: Sequence[str], max_tokens: int = 20):
        vocab = list(vocab)
        if not vocab or vocab[0] != PAD_TOKEN:
            raise ValueError(
                f"the vocabulary must start with {PAD_TOKEN!r} (id 0), got "
                f"{vocab[:1]!r}; use the official vocabulary_*.txt layout"
            )
        if UNK_TOKEN not in vocab:
            raise ValueError(f"the vocabulary has no {UNK_TOKEN!r} entry for unknown words")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        self.vocab = vocab
        # the official dict comprehension keeps the *last* id of a duplicated word
        self.word_to_id: Dict[str, int] = {w: i for i, w in enumerate(vocab)}
        self.pad_id = 0
        self.unk_id = self.word_to_id[UNK_TOKEN]
        self.max_tokens = int(max_tokens)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, sentence: str) -> List[int]:
        """One sentence -> exactly ``max_tokens`` ids, left-padded with 0."""
        ids = [self.word_to_id.get(w, self.unk_id) for w in split_words(sentence)]
        ids = ids[: self.max_tokens]
        return [self.pad_id] * (self.max_tokens - len(ids)) + ids

    def describe(self, sentence: str) -> Dict[str, List]:
        """What the model reads of one sentence, for people: ``{"tokens": [{"text", "token",
        "unknown"}], "truncated": [words beyond T]}``. ``token`` is the vocabulary entry used,
        ``<unk>`` for a word missing from the vocabulary (``unknown`` True)."""
        words = split_words(sentence)
        tokens = []
        for w in words[: self.max_tokens]:
            known = w in self.word_to_id
            tokens.append({"text": w, "token": w if known else UNK_TOKEN, "unknown": not known})
        return {"tokens": tokens, "truncated": words[self.max_tokens :]}

    def __call__(self, sentences: Sequence[str]) -> List[List[int]]:
        if isinstance(sentences, str):
            raise TypeError("pass a list of sentences (use encode() for a single one)")
        return [self.encode(s) for s in sentences]
