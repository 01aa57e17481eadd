"""Official ReSTR language encoder (``TR_GloVe``): trainable GloVe word embeddings, a fixed
sinusoidal position encoding, post-norm transformer blocks, projection to the fusion width.

State-dict keys (under ``encoder_l.``): ``embedding.weight``, ``blocks.N.*``, ``proj_lang.*``,
``lang_norm.*``. The position encoding is a non-persistent buffer: official checkpoints do not
contain it.
"""
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.config import configurable
from torch import nn

from .blocks import PostNormBlock, init_restr_weights
from .build import LANGUAGE_ENCODER_REGISTRY, LanguageFeatures
from .position_encoding import sinusoidal_position_encoding
from .tokenizer import WordTokenizer
from .word_vectors import load_vocabulary, load_word_vectors

__all__ = ["GloVeTransformerEncoder"]

logger = logging.getLogger(__name__)


@LANGUAGE_ENCODER_REGISTRY.register()
class GloVeTransformerEncoder(nn.Module):
    """Token ids (B, T) -> ``LanguageFeatures`` with features (B, T, d_model).

    Forward: ``embedding(ids) + PE`` -> ``num_layers`` post-norm blocks of width ``d_lang`` ->
    ``proj_lang`` (d_lang -> d_model) -> ``lang_norm``. Pad tokens (id 0) have a zero embedding
    (plus PE) and, as in the official code, are attended to unless ``mask_pad_tokens``.
    """

    @configurable
    def __init__(
        self,
        *,
        vocab: Sequence[str],
        d_model: int,
        word_vectors: Optional[torch.Tensor] = None,
        d_lang: int = 300,
        num_layers: int = 6,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        max_tokens: int = 20,
        mask_pad_tokens: bool = False,
    ):
        """
        Args:
            vocab: words in id order, starting with ``<pad>`` (id 0); must contain ``<unk>``.
            d_model: output width (the fusion width; the ViT width in the official model).
            word_vectors: (len(vocab), d_lang) initial embeddings (GloVe); None keeps PyTorch's
                N(0, 1) init, for models whose embedding comes from a checkpoint.
            d_lang: word-vector width (300 for GloVe).
            num_layers, num_heads: language transformer depth and heads (official: 6, and the
                ViT head count, which must divide d_lang).
            mlp_ratio: MLP hidden = mlp_ratio * d_lang (official 4 -> 1200).
            dropout, drop_path_rate: regularisation of the blocks (official 0, 0).
            max_tokens: T, the fixed sentence length (official 20).
            mask_pad_tokens: exclude pad tokens from attention (official: False).
        """
        super().__init__()
        self.tokenizer = WordTokenizer(vocab, max_tokens)
        self.max_tokens = int(max_tokens)
        self.d_lang = int(d_lang)
        self.d_model = int(d_model)
        self.mask_pad_tokens = bool(mask_pad_tokens)

        self.embedding = nn.Embedding(len(vocab), d_lang, padding_idx=0)
        # not a parameter nor a persistent buffer: absent from official checkpoints
        self.register_buffer(
            "pos_embed", sinusoidal_position_encoding(max_tokens, d_lang)[None], persistent=False
        )
        dpr = torch.linspace(0, drop_path_rate, num_layers, device="cpu").tolist()
        mlp_dim = int(mlp_ratio * d_lang)
        self.blocks = nn.ModuleList(
            [PostNormBlock(d_lang, num_heads, mlp_dim, dropout, dpr[i]) for i in range(num_layers)]
        )
        self.proj_lang = nn.Linear(d_lang, d_model)
        self.lang_norm = nn.LayerNorm(d_model)

        self.apply(init_restr_weights)
        with torch.no_grad():
            if word_vectors is not None:
                word_vectors = torch.as_tensor(word_vectors, dtype=torch.float32)
                if tuple(word_vectors.shape) != (len(vocab), d_lang):
                    raise ValueError(
                        f"word_vectors has shape {tuple(word_vectors.shape)}, expected "
                        f"({len(vocab)}, {d_lang}) = (vocabulary size, d_lang)"
                    )
                self.embedding.weight.copy_(word_vectors)
            # the official constructor zeroes the <pad> row
            self.embedding.weight[0].zero_()

    @classmethod
    def from_config(cls, cfg, d_model: int):
        lang = cfg.MODEL.RESTR.LANGUAGE
        if lang.EMBEDDING_FILE:
            vocab, vectors = load_word_vectors(lang.EMBEDDING_FILE, lang.VOCAB_FILE or None,
                                               lang.EMBEDDING_WORDS or None)
            vectors = torch.from_numpy(np.ascontiguousarray(vectors))
            logger.info(
                f"GloVe embedding: {vectors.shape[0]} words x {vectors.shape[1]} from "
                f"{lang.EMBEDDING_FILE}"
            )
        else:
            vocab, vectors = load_vocabulary(lang.VOCAB_FILE), None
            logger.info(
                f"GloVe embedding: no EMBEDDING_FILE, {len(vocab)} words randomly initialised "
                "(expected to come from MODEL.WEIGHTS)"
            )
        return dict(
            vocab=vocab,
            d_model=d_model,
            word_vectors=vectors,
            d_lang=lang.D_LANG,
            num_layers=lang.NUM_LAYERS,
            num_heads=lang.NUM_HEADS,
            mlp_ratio=lang.MLP_RATIO,
            dropout=lang.DROPOUT,
            drop_path_rate=lang.DROP_PATH_RATE,
            max_tokens=lang.MAX_TOKENS,
            mask_pad_tokens=cfg.MODEL.RESTR.MASK_PAD_TOKENS,
        )

    @property
    def vocab(self) -> List[str]:
        return self.tokenizer.vocab

    def describe_tokens(self, sentence: str) -> Dict[str, List]:
        """The words of ``sentence`` as this encoder reads them (``WordTokenizer.describe``):
        which became ``<unk>`` and which were cut beyond T."""
        return self.tokenizer.describe(sentence)

    def tokenize(self, sentences: Sequence[str]) -> Dict[str, torch.Tensor]:
        """List of B sentences -> ``{"input_ids": (B, T) int64}`` (official tokenisation, see
        ``tokenizer.py`` for the handling of bad text)."""
        return {"input_ids": torch.tensor(self.tokenizer(sentences), dtype=torch.long).reshape(-1, self.max_tokens)}

    def forward(self, input_ids: torch.Tensor) -> LanguageFeatures:
        if input_ids.ndim != 2 or input_ids.shape[1] != self.max_tokens:
            raise ValueError(
                f"input_ids must be (B, {self.max_tokens}), got {tuple(input_ids.shape)}; "
                "use tokenize() to build them"
            )
        valid = input_ids != self.tokenizer.pad_id
        key_valid = None
        if self.mask_pad_tokens:
            if not bool(valid.any(dim=1).all()):
                raise ValueError("a sentence has only <pad> tokens; nothing to attend to")
            key_valid = valid
        x = self.embedding(input_ids) + self.pos_embed
        for blk in self.blocks:
            x = blk(x, key_valid)
        x = self.lang_norm(self.proj_lang(x))
        return LanguageFeatures(x, valid)
