"""Hugging Face `transformers` Mask2Former <-> our detectron2 Mask2Former (official keys).

* `convert_hf_to_d2`: a `Mask2FormerForUniversalSegmentation` state dict (Swin backbone) ->
  official Mask2Former keys (`backbone.*`, `sem_seg_head.pixel_decoder.*`,
  `sem_seg_head.predictor.*`, `criterion.empty_weight`), key by key. Every Hugging Face tensor
  is consumed exactly once or is on the named list of tensors the Hugging Face forward never
  reads; anything else raises `ConversionError` listing the keys.
* `check_expected_keys`: the converted dict against an official `{key: shape}` set, both ways.
* `hf_config_to_d2_options` / `d2_cfg_to_hf_config`: the architecture in either config system.

Conventions that differ and are converted:

* Swin attention: Hugging Face has separate `q_proj/k_proj/v_proj`; official has one `attn.qkv`
  (rows q, k, v). The relative-position index is a non-persistent buffer in Hugging Face and a
  persistent one in the official code: it is regenerated from the window size (and checked
  against the legacy Hugging Face buffer when a checkpoint carries one).
* Decoder self-attention: `q_proj/k_proj/v_proj` -> `nn.MultiheadAttention.in_proj_*` (q, k, v
  concatenated). Cross-attention is an `nn.MultiheadAttention` on both sides.
* Post-norm names: `self_attn_layer_norm/cross_attn_layer_norm/final_layer_norm/fc1/fc2` of one
  Hugging Face decoder layer -> `norm/linear1/linear2` of three official per-type layer lists.
* Classes: both put the no-object logit LAST (`num_labels + 1` outputs) and order the real
  classes by label id, so the class head is copied unchanged; the class names of the converted
  model are `id2label[0..num_labels-1]`.
* Pixels: Hugging Face expects `(x / 255 - mean) / std` (its image processor); the detectron2
  model normalises raw 0-255 pixels with `PIXEL_MEAN/STD` = 255 * (mean, std).
"""
import collections
import logging
import re

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "ConversionError",
    "convert_hf_to_d2",
    "hf_config_to_d2_options",
    "check_expected_keys",
    "d2_cfg_to_hf_config",
    "build_d2_cfg",
    "rename_legacy_hf_keys",
    "swin_relative_position_index",
]


class ConversionError(ValueError):
    """Raised when the Hugging Face state dict and the official key layout do not match."""


# Names of older transformers Swin checkpoints (the ones on the hub) -> current names.
_LEGACY_SWIN_RENAMES = (
    ("attention.self.relative_position_bias_table",
     "attention.relative_position_bias.relative_position_bias_table"),
    ("attention.self.relative_position_index",
     "attention.relative_position_bias.relative_position_index"),
    ("attention.self.query", "attention.q_proj"),
    ("attention.self.key", "attention.k_proj"),
    ("attention.self.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
)

_HF_BACKBONE = "model.pixel_level_module.encoder."
_HF_PIXEL_DECODER = "model.pixel_level_module.decoder."
_HF_PREDICTOR = "model.transformer_module."
_D2_PIXEL_DECODER = "sem_seg_head.pixel_decoder."
_D2_PREDICTOR = "sem_seg_head.predictor."

# Tensors of the Hugging Face model that its forward never reads: SwinBackbone wraps a full
# SwinModel whose final `layernorm` is only used by the classification model.
_HF_UNUSED = (_HF_BACKBONE + "swin.layernorm.weight", _HF_BACKBONE + "swin.layernorm.bias")


def rename_legacy_hf_keys(state_dict):
    """Map older transformers Swin key names (`attention.self.query`, `intermediate.dense`, a
    backbone without the `swin.` level) to the names of the installed transformers."""
    out = collections.OrderedDict()
    for key, value in state_dict.items():
        new = key
        if new.startswith(_HF_BACKBONE):
            rest = new[len(_HF_BACKBONE):]
            if rest.startswith(("embeddings.", "encoder.")):
                rest = "swin." + rest
            for old, repl in _LEGACY_SWIN_RENAMES:
                rest = rest.replace(old, repl)
            new = _HF_BACKBONE + rest
        if new in out:
            raise ConversionError(f"two Hugging Face keys map to {new!r} after legacy renaming")
        out[new] = value
    return out


def swin_relative_position_index(window_size):
    """(W*W, W*W) int64 index into the (2W-1)^2 relative-position table, Swin's layout."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                        indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += window_size - 1
    rel[:, :, 1] += window_size - 1
    rel[:, :, 0] *= 2 * window_size - 1
    return rel.sum(-1)


class _Source:
    """The Hugging Face state dict, with a record of which keys were consumed."""

    def __init__(self, state_dict):
        self.sd = state_dict
        self.used = set()

    def __contains__(self, key):
        return key in self.sd

    def take(self, key):
        if key not in self.sd:
            raise ConversionError(f"Hugging Face state dict has no key {key!r}")
        if key in self.used:
            raise ConversionError(f"Hugging Face key {key!r} consumed twice")
        self.used.add(key)
        return self.sd[key]

    def indices(self, pattern):
        """Sorted integers N of keys matching `pattern` (a regex with one `(\\d+)` group)."""
        rx = re.compile(pattern)
        return sorted({int(m.group(1)) for k in self.sd for m in [rx.match(k)] if m})

    def leftovers(self):
        return [k for k in self.sd if k not in self.used]


class _Target(collections.OrderedDict):
    def put(self, key, value):
        if key in self:
            raise ConversionError(f"official key {key!r} produced twice")
        self[key] = value.detach().clone().contiguous()


def _copy(src, dst, hf_prefix, d2_prefix, names, suffixes=("weight", "bias")):
    for hf_name, d2_name in names:
        for s in suffixes:
            dst.put(f"{d2_prefix}{d2_name}.{s}", src.take(f"{hf_prefix}{hf_name}.{s}"))


def _qkv(src, prefix, names=("q_proj", "k_proj", "v_proj")):
    weight = torch.cat([src.take(f"{prefix}{n}.weight") for n in names], 0)
    bias = torch.cat([src.take(f"{prefix}{n}.bias") for n in names], 0)
    return weight, bias


def _convert_swin(src, dst):
    hf = _HF_BACKBONE + "swin."
    dst.put("backbone.patch_embed.proj.weight", src.take(hf + "embeddings.patch_embeddings.projection.weight"))
    dst.put("backbone.patch_embed.proj.bias", src.take(hf + "embeddings.patch_embeddings.projection.bias"))
    dst.put("backbone.patch_embed.norm.weight", src.take(hf + "embeddings.norm.weight"))
    dst.put("backbone.patch_embed.norm.bias", src.take(hf + "embeddings.norm.bias"))
    if hf + "embeddings.position_embeddings" in src:
        raise ConversionError(
            "the Hugging Face Swin uses absolute position embeddings (use_absolute_embeddings=True); "
            "official Mask2Former configs use APE=False and this converter does not map "
            "`absolute_pos_embed` (its layout differs). Convert a model with APE disabled.")
    if hf + "embeddings.mask_token" in src:
        raise ConversionError("the Hugging Face Swin has a mask token (masked-image-modeling "
                              "model); Mask2Former backbones have none")
    stages = src.indices(re.escape(hf + "encoder.layers.") + r"(\d+)\.")
    if stages != list(range(len(stages))) or not stages:
        raise ConversionError(f"unexpected Swin stage indices {stages}")
    for i in stages:
        hs = f"{hf}encoder.layers.{i}."
        ds = f"backbone.layers.{i}."
        blocks = src.indices(re.escape(hs + "blocks.") + r"(\d+)\.")
        for j in blocks:
            hb, db = f"{hs}blocks.{j}.", f"{ds}blocks.{j}."
            _copy(src, dst, hb, db, [("layernorm_before", "norm1")])
            table = src.take(hb + "attention.relative_position_bias.relative_position_bias_table")
            window = (int(round(table.shape[0] ** 0.5)) + 1) // 2
            if (2 * window - 1) ** 2 != table.shape[0]:
                raise ConversionError(f"{hb}: relative-position table of {table.shape[0]} rows is "
                                      "not (2W-1)^2 for an integer window W")
            index = swin_relative_position_index(window)
            legacy_index = hb + "attention.relative_position_bias.relative_position_index"
            if legacy_index in src:
                stored = src.take(legacy_index)
                if not torch.equal(stored.reshape(index.shape).long(), index):
                    raise ConversionError(f"{legacy_index} differs from Swin's index layout")
            dst.put(db + "attn.relative_position_bias_table", table)
            dst.put(db + "attn.relative_position_index", index)
            w, b = _qkv(src, hb + "attention.")
            dst.put(db + "attn.qkv.weight", w)
            dst.put(db + "attn.qkv.bias", b)
            _copy(src, dst, hb, db, [("attention.o_proj", "attn.proj"), ("layernorm_after", "norm2"),
                                      ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")])
        if hs + "downsample.reduction.weight" in src:
            dst.put(ds + "downsample.reduction.weight", src.take(hs + "downsample.reduction.weight"))
            _copy(src, dst, hs, ds, [("downsample.norm", "downsample.norm")])
    norms = src.indices(re.escape(_HF_BACKBONE + "hidden_states_norms.stage") + r"(\d+)\.")
    if norms != [s + 1 for s in stages]:
        raise ConversionError(f"the Hugging Face backbone must output every stage "
                              f"(out_features stage1..stage{len(stages)}); it has norms for {norms}")
    for s in norms:
        _copy(src, dst, _HF_BACKBONE, "backbone.", [(f"hidden_states_norms.stage{s}", f"norm{s - 1}")])


def _convert_pixel_decoder(src, dst):
    hf, d2 = _HF_PIXEL_DECODER, _D2_PIXEL_DECODER
    # input_proj.l: l = 0 is the lowest resolution (res5) in both implementations.
    for l in src.indices(re.escape(hf + "input_projections.") + r"(\d+)\."):
        _copy(src, dst, hf, d2, [(f"input_projections.{l}.0", f"input_proj.{l}.0"),
                                  (f"input_projections.{l}.1", f"input_proj.{l}.1")])
    dst.put(d2 + "transformer.level_embed", src.take(hf + "level_embed"))
    for n in src.indices(re.escape(hf + "encoder.layers.") + r"(\d+)\."):
        _copy(src, dst, f"{hf}encoder.layers.{n}.", f"{d2}transformer.encoder.layers.{n}.", [
            ("self_attn.sampling_offsets", "self_attn.sampling_offsets"),
            ("self_attn.attention_weights", "self_attn.attention_weights"),
            ("self_attn.value_proj", "self_attn.value_proj"),
            ("self_attn.output_proj", "self_attn.output_proj"),
            ("self_attn_layer_norm", "norm1"),
            ("fc1", "linear1"),
            ("fc2", "linear2"),
            ("final_layer_norm", "norm2"),
        ])
    _copy(src, dst, hf, d2, [("mask_projection", "mask_features")])
    # Extra FPN levels: official Conv2d(norm=GN) keeps the norm inside the conv module.
    for k in src.indices(re.escape(hf + "adapter_") + r"(\d+)\."):
        dst.put(f"{d2}adapter_{k}.weight", src.take(f"{hf}adapter_{k}.0.weight"))
        _copy(src, dst, hf, d2, [(f"adapter_{k}.1", f"adapter_{k}.norm")])
        dst.put(f"{d2}layer_{k}.weight", src.take(f"{hf}layer_{k}.0.weight"))
        _copy(src, dst, hf, d2, [(f"layer_{k}.1", f"layer_{k}.norm")])


def _convert_predictor(src, dst):
    hf, d2 = _HF_PREDICTOR, _D2_PREDICTOR
    layers = src.indices(re.escape(hf + "decoder.layers.") + r"(\d+)\.")
    # Official order: all self-attention layers, then all cross-attention, then all FFN.
    for n in layers:
        hl = f"{hf}decoder.layers.{n}."
        w, b = _qkv(src, hl + "self_attn.")
        dst.put(f"{d2}transformer_self_attention_layers.{n}.self_attn.in_proj_weight", w)
        dst.put(f"{d2}transformer_self_attention_layers.{n}.self_attn.in_proj_bias", b)
        _copy(src, dst, hl, f"{d2}transformer_self_attention_layers.{n}.",
              [("self_attn.out_proj", "self_attn.out_proj"), ("self_attn_layer_norm", "norm")])
    for n in layers:
        hl = f"{hf}decoder.layers.{n}."
        ca = f"{d2}transformer_cross_attention_layers.{n}."
        dst.put(ca + "multihead_attn.in_proj_weight", src.take(hl + "cross_attn.in_proj_weight"))
        dst.put(ca + "multihead_attn.in_proj_bias", src.take(hl + "cross_attn.in_proj_bias"))
        _copy(src, dst, hl, ca, [("cross_attn.out_proj", "multihead_attn.out_proj"),
                                 ("cross_attn_layer_norm", "norm")])
    for n in layers:
        _copy(src, dst, f"{hf}decoder.layers.{n}.", f"{d2}transformer_ffn_layers.{n}.",
              [("fc1", "linear1"), ("fc2", "linear2"), ("final_layer_norm", "norm")])
    # Official state-dict order after the layers: decoder_norm, query_feat, query_embed,
    # level_embed, input_proj (only when projecting), class_embed, mask_embed.
    _copy(src, dst, hf, d2, [("decoder.layernorm", "decoder_norm")])
    dst.put(d2 + "query_feat.weight", src.take(hf + "queries_features.weight"))
    dst.put(d2 + "query_embed.weight", src.take(hf + "queries_embedder.weight"))
    dst.put(d2 + "level_embed.weight", src.take(hf + "level_embed.weight"))
    for i in src.indices(re.escape(hf + "input_projections.") + r"(\d+)\."):
        _copy(src, dst, hf, d2, [(f"input_projections.{i}", f"input_proj.{i}")])
    _copy(src, dst, "", d2, [("class_predictor", "class_embed")])
    for i in src.indices(re.escape(hf + "decoder.mask_predictor.mask_embedder.") + r"(\d+)\."):
        _copy(src, dst, hf, d2, [(f"decoder.mask_predictor.mask_embedder.{i}.0", f"mask_embed.layers.{i}")])


def convert_hf_to_d2(hf_state_dict, drop_criterion=False):
    """Convert a `Mask2FormerForUniversalSegmentation.state_dict()` to official key names.

    Args:
        hf_state_dict: mapping of Hugging Face keys (current or legacy names) to tensors.
        drop_criterion: leave out `criterion.empty_weight` (it is a loss buffer, not a weight).

    Returns:
        OrderedDict in the official state-dict order of `backbone`, `sem_seg_head`, `criterion`.

    Raises:
        ConversionError listing every Hugging Face key that was not consumed.
    """
    src = _Source(rename_legacy_hf_keys(hf_state_dict))
    if not any(k.startswith(_HF_BACKBONE + "swin.") for k in src.sd):
        raise ConversionError("no Swin backbone keys found under "
                              f"{_HF_BACKBONE!r}: this converter handles Mask2FormerForUniversal"
                              "Segmentation with a Swin backbone only")
    dst = _Target()
    _convert_swin(src, dst)
    _convert_pixel_decoder(src, dst)
    _convert_predictor(src, dst)
    if "criterion.empty_weight" in src:
        weight = src.take("criterion.empty_weight")
        if not drop_criterion:
            dst.put("criterion.empty_weight", weight)
    for key in _HF_UNUSED:
        if key in src:
            src.take(key)
    left = src.leftovers()
    if left:
        raise ConversionError(f"{len(left)} Hugging Face keys have no official counterpart: "
                              + ", ".join(left))
    return collections.OrderedDict(dst)


def check_expected_keys(converted, expected_shapes):
    """Raise ConversionError unless `converted` has exactly the keys and shapes of
    `expected_shapes` ({key: shape list/tuple/torch.Size})."""
    missing = [k for k in expected_shapes if k not in converted]
    unexpected = [k for k in converted if k not in expected_shapes]
    wrong = [f"{k}: converted {list(converted[k].shape)} vs expected {list(expected_shapes[k])}"
             for k in expected_shapes
             if k in converted and list(converted[k].shape) != list(expected_shapes[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} official keys not produced: " + ", ".join(missing))
    if unexpected:
        problems.append(f"{len(unexpected)} converted keys not in the official model: "
                        + ", ".join(unexpected))
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches: " + "; ".join(wrong))
    if problems:
        raise ConversionError("\n".join(problems))


def hf_config_to_d2_options(hf_config):
    """detectron2 config options (a flat `[key, value, ...]` list for `cfg.merge_from_list`)
    that build our Mask2Former with the architecture of a Hugging Face `Mask2FormerConfig`.

    Raises ConversionError for Hugging Face settings that the official architecture cannot
    express (it hard-codes them)."""
    bb = hf_config.backbone_config
    if bb is None or bb.model_type != "swin":
        raise ConversionError(f"backbone {getattr(bb, 'model_type', None)!r} is not supported: "
                              "only Swin backbones are converted")
    checks = [
        (hf_config.encoder_feedforward_dim == 1024,
         f"encoder_feedforward_dim={hf_config.encoder_feedforward_dim}: the official "
         "MSDeformAttnPixelDecoder hard-codes 1024"),
        (hf_config.activation_function == "relu",
         f"activation_function={hf_config.activation_function!r}: official decoder uses relu"),
        (list(hf_config.feature_strides) == [4, 8, 16, 32],
         f"feature_strides={list(hf_config.feature_strides)}: Swin strides are 4, 8, 16, 32"),
        (bb.hidden_act == "gelu", f"Swin hidden_act={bb.hidden_act!r}: official uses gelu"),
        (abs(bb.layer_norm_eps - 1e-5) < 1e-12,
         f"Swin layer_norm_eps={bb.layer_norm_eps}: official LayerNorms use 1e-5"),
        (not bb.use_absolute_embeddings, "Swin use_absolute_embeddings=True is not converted"),
        (list(bb.out_features) == [f"stage{i + 1}" for i in range(len(bb.depths))],
         f"Swin out_features={bb.out_features}: Mask2Former needs every stage"),
        (len(bb.depths) == 4, f"Swin with {len(bb.depths)} stages: Mask2Former needs 4"),
    ]
    bad = [msg for ok, msg in checks if not ok]
    if bad:
        raise ConversionError("Hugging Face config cannot be expressed as an official config: "
                              + "; ".join(bad))
    mean = [123.675, 116.28, 103.53]
    std = [58.395, 57.12, 57.375]
    return [
        "MODEL.META_ARCHITECTURE", "MaskFormer",
        "MODEL.BACKBONE.NAME", "D2SwinTransformer",
        "MODEL.PIXEL_MEAN", mean,
        "MODEL.PIXEL_STD", std,
        "MODEL.SWIN.EMBED_DIM", int(bb.embed_dim),
        "MODEL.SWIN.DEPTHS", [int(d) for d in bb.depths],
        "MODEL.SWIN.NUM_HEADS", [int(h) for h in bb.num_heads],
        "MODEL.SWIN.WINDOW_SIZE", int(bb.window_size),
        "MODEL.SWIN.MLP_RATIO", float(bb.mlp_ratio),
        "MODEL.SWIN.QKV_BIAS", bool(bb.qkv_bias),
        "MODEL.SWIN.PATCH_SIZE", int(bb.patch_size),
        "MODEL.SWIN.PRETRAIN_IMG_SIZE", int(bb.image_size),
        "MODEL.SWIN.APE", False,
        "MODEL.SWIN.PATCH_NORM", True,
        "MODEL.SWIN.DROP_PATH_RATE", float(bb.drop_path_rate),
        "MODEL.SWIN.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.NAME", "MaskFormerHead",
        "MODEL.SEM_SEG_HEAD.IN_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME", "MSDeformAttnPixelDecoder",
        "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", ["res3", "res4", "res5"],
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", int(hf_config.num_labels),
        "MODEL.SEM_SEG_HEAD.CONVS_DIM", int(hf_config.feature_size),
        "MODEL.SEM_SEG_HEAD.MASK_DIM", int(hf_config.mask_feature_size),
        "MODEL.SEM_SEG_HEAD.NORM", "GN",
        "MODEL.SEM_SEG_HEAD.COMMON_STRIDE", int(hf_config.common_stride),
        "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", int(hf_config.encoder_layers),
        "MODEL.SEM_SEG_HEAD.IGNORE_VALUE", int(hf_config.ignore_value),
        "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME", "MultiScaleMaskedTransformerDecoder",
        "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "multi_scale_pixel_decoder",
        "MODEL.MASK_FORMER.HIDDEN_DIM", int(hf_config.hidden_dim),
        "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", int(hf_config.num_queries),
        "MODEL.MASK_FORMER.NHEADS", int(hf_config.num_attention_heads),
        "MODEL.MASK_FORMER.DIM_FEEDFORWARD", int(hf_config.dim_feedforward),
        "MODEL.MASK_FORMER.DEC_LAYERS", int(hf_config.decoder_layers),
        "MODEL.MASK_FORMER.PRE_NORM", bool(hf_config.pre_norm),
        "MODEL.MASK_FORMER.ENFORCE_INPUT_PROJ", bool(hf_config.enforce_input_projection),
        "MODEL.MASK_FORMER.DROPOUT", float(hf_config.dropout),
        "MODEL.MASK_FORMER.DEEP_SUPERVISION", bool(hf_config.use_auxiliary_loss),
        "MODEL.MASK_FORMER.NO_OBJECT_WEIGHT", float(hf_config.no_object_weight),
        "MODEL.MASK_FORMER.CLASS_WEIGHT", float(hf_config.class_weight),
        "MODEL.MASK_FORMER.MASK_WEIGHT", float(hf_config.mask_weight),
        "MODEL.MASK_FORMER.DICE_WEIGHT", float(hf_config.dice_weight),
        "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", int(hf_config.train_num_points),
        "MODEL.MASK_FORMER.OVERSAMPLE_RATIO", float(hf_config.oversample_ratio),
        "MODEL.MASK_FORMER.IMPORTANCE_SAMPLE_RATIO", float(hf_config.importance_sample_ratio),
        "MODEL.MASK_FORMER.SIZE_DIVISIBILITY", 32,
    ]


def build_d2_cfg(options, base_config_file=None):
    """``build_cfg(base_config_file, options)`` on CPU: without a file, the options (from
    :func:`hf_config_to_d2_options`) name the Mask2Former architecture themselves."""
    from segmentation_core.config import build_cfg

    cfg = build_cfg(base_config_file, list(options))
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def d2_cfg_to_hf_config(cfg):
    """A Hugging Face `Mask2FormerConfig` with the architecture of our detectron2 Mask2Former
    config (Swin backbone, MSDeformAttn pixel decoder, masked-attention decoder).

    Raises ConversionError for settings Hugging Face cannot express."""
    from transformers import Mask2FormerConfig, SwinConfig

    m, head, mf, sw = cfg.MODEL, cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.MASK_FORMER, cfg.MODEL.SWIN
    checks = [
        (m.BACKBONE.NAME == "D2SwinTransformer", f"backbone {m.BACKBONE.NAME}: Swin only"),
        (head.PIXEL_DECODER_NAME == "MSDeformAttnPixelDecoder",
         f"pixel decoder {head.PIXEL_DECODER_NAME}: MSDeformAttnPixelDecoder only"),
        (mf.TRANSFORMER_DECODER_NAME == "MultiScaleMaskedTransformerDecoder",
         f"decoder {mf.TRANSFORMER_DECODER_NAME}: MultiScaleMaskedTransformerDecoder only"),
        (list(head.IN_FEATURES) == ["res2", "res3", "res4", "res5"], "IN_FEATURES res2..res5"),
        (list(head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES) == ["res3", "res4", "res5"],
         "DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES res3..res5 (Hugging Face hard-codes 3 levels)"),
        (head.NORM == "GN", f"SEM_SEG_HEAD.NORM {head.NORM}: Hugging Face uses GroupNorm(32)"),
        (not sw.APE, "SWIN.APE=True"),
        (sw.PATCH_NORM, "SWIN.PATCH_NORM=False"),
    ]
    bad = [msg for ok, msg in checks if not ok]
    if bad:
        raise ConversionError("config has no Hugging Face equivalent: " + "; ".join(bad))
    swin = SwinConfig(
        image_size=int(sw.PRETRAIN_IMG_SIZE), patch_size=int(sw.PATCH_SIZE),
        embed_dim=int(sw.EMBED_DIM), depths=list(sw.DEPTHS), num_heads=list(sw.NUM_HEADS),
        window_size=int(sw.WINDOW_SIZE), mlp_ratio=float(sw.MLP_RATIO), qkv_bias=bool(sw.QKV_BIAS),
        hidden_dropout_prob=float(sw.DROP_RATE), attention_probs_dropout_prob=float(sw.ATTN_DROP_RATE),
        drop_path_rate=float(sw.DROP_PATH_RATE), use_absolute_embeddings=False,
        out_features=[f"stage{i + 1}" for i in range(len(sw.DEPTHS))],
    )
    return Mask2FormerConfig(
        backbone_config=swin,
        num_labels=int(head.NUM_CLASSES),
        feature_size=int(head.CONVS_DIM), mask_feature_size=int(head.MASK_DIM),
        hidden_dim=int(mf.HIDDEN_DIM), encoder_feedforward_dim=1024,
        encoder_layers=int(head.TRANSFORMER_ENC_LAYERS), decoder_layers=int(mf.DEC_LAYERS),
        num_attention_heads=int(mf.NHEADS), dropout=float(mf.DROPOUT),
        dim_feedforward=int(mf.DIM_FEEDFORWARD), pre_norm=bool(mf.PRE_NORM),
        enforce_input_projection=bool(mf.ENFORCE_INPUT_PROJ), common_stride=int(head.COMMON_STRIDE),
        ignore_value=int(head.IGNORE_VALUE), num_queries=int(mf.NUM_OBJECT_QUERIES),
        no_object_weight=float(mf.NO_OBJECT_WEIGHT), class_weight=float(mf.CLASS_WEIGHT),
        mask_weight=float(mf.MASK_WEIGHT), dice_weight=float(mf.DICE_WEIGHT),
        train_num_points=int(mf.TRAIN_NUM_POINTS), oversample_ratio=float(mf.OVERSAMPLE_RATIO),
        importance_sample_ratio=float(mf.IMPORTANCE_SAMPLE_RATIO),
        use_auxiliary_loss=bool(mf.DEEP_SUPERVISION),
    )
