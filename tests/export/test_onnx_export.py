"""ONNX export of each family: valid graph, dynamic batch / height / width (and ReSTR's
sentence count), onnxruntime equal to PyTorch at sizes other than the export size."""
import numpy as np
import onnx
import pytest
import torch

from segmentation_core.export.onnx_export import compare_with_pytorch, ort_session

from .conftest import EXPORT_SIZE, FAMILIES

TOLERANCE = 1e-4
# (batch, height, width), none the export size 2x64x64: non-square, odd multiples of 32
CHECK_SIZES = [(1, 96, 160), (3, 224, 96)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_export_matches_pytorch_at_other_sizes(family, exported):
    ex = exported(family)
    model = onnx.load(ex.path)
    onnx.checker.check_model(model, full_check=True)
    # the graph's inputs are declared with symbolic (dynamic) batch, height and width
    images = next(i for i in model.graph.input if i.name == "images")
    dims = images.type.tensor_type.shape.dim
    assert [d.dim_param != "" for d in dims] == [True, False, True, True], dims
    session = ort_session(ex.path)
    diffs = compare_with_pytorch(ex.spec, session, CHECK_SIZES)
    print(family, diffs)
    for (b, h, w), d in zip(CHECK_SIZES, diffs):
        assert (b, h, w) != (2,) + EXPORT_SIZE
        for name, diff in d.items():
            assert diff <= TOLERANCE, f"{family} {name} at {b}x{h}x{w}: max abs diff {diff}"


def test_restr_dynamic_sentence_count(exported):
    ex = exported("restr")
    session = ort_session(ex.path)
    module = ex.spec.graph_module().eval()
    for batch, sentences in [(1, 5), (2, 1)]:
        torch.manual_seed(batch)
        inputs = ex.spec.example_inputs(batch, 96, 64, sentences_per_image=sentences)
        with torch.no_grad():
            (expected,) = module(**dict(zip(ex.spec.input_names, inputs)))
        (got,) = session.run(None, {n: x.numpy() for n, x in zip(ex.spec.input_names, inputs)})
        assert got.shape == tuple(expected.shape) and got.shape[:2] == (batch, sentences)
        assert np.abs(got - expected.numpy()).max() <= TOLERANCE


def test_export_restores_default_paths_and_switches_deformable_core(exported):
    from maskformer_d2.layers.ms_deform_attn import MSDeformAttn

    ex = exported("mask2former")
    impls = {m.impl for m in ex.model.modules() if isinstance(m, MSDeformAttn)}
    assert impls == {"gather"}, "the export must leave the model on its default core"
    with ex.spec.export_paths():
        assert {m.impl for m in ex.model.modules() if isinstance(m, MSDeformAttn)} == {"pytorch"}
    # the exported graph samples with GridSample, not an embedding_bag Loop
    ops = {n.op_type for n in onnx.load(ex.path).graph.node}
    assert "GridSample" in ops and "Loop" not in ops, sorted(ops)
    seg = exported("segmenter")
    assert seg.model.encoder.always_resize_pos_embed is False


def test_wrong_size_and_batch_are_errors(exported):
    from segmentation_core.export.onnx_export import export_onnx

    ex = exported("segmenter")
    with pytest.raises(ValueError, match="multiple of 16"):
        ex.spec.check_size(100, 64)
    with pytest.raises(ValueError, match="batch must be >= 2"):
        export_onnx(ex.spec, "/nonexistent/x.onnx", batch=1, height=64, width=64)


@pytest.mark.slow
@pytest.mark.parametrize("language_cache_mb", [0, 4])
def test_restr_hf_text_encoder_export(tmp_path, language_cache_mb):
    """ReSTR with the pretrained MiniLM encoder: the graph takes input_ids, token_type_ids and
    attention_mask (the pad positions of the batch differ), onnxruntime equals PyTorch. With
    the language feature cache on, the graph still holds the encoder: a cache consulted while
    exporting would bake the example sentences' features into it as constants."""
    from detectron2.modeling import build_model

    from segmentation_core.export import build_export_spec
    from segmentation_core.export.onnx_export import export_onnx
    from train_net import load_config

    from .conftest import REPO

    cfg = load_config(str(REPO / "configs/shapes/restr_shapes_minilm.yaml"),
                      ["MODEL.VIT.DEPTH", 1, "MODEL.VIT.IMAGE_SIZE", [64, 64], "INPUT.IMAGE_SIZE", 64,
                       "MODEL.RESTR.LANGUAGE.FREEZE", True, "MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB", language_cache_mb])
    torch.manual_seed(0)
    spec = build_export_spec(build_model(cfg).eval(), cfg)
    assert "attention_mask" in spec.input_names
    path = export_onnx(spec, str(tmp_path / "restr_minilm.onnx"), height=64, width=64)
    diffs = compare_with_pytorch(spec, ort_session(path), CHECK_SIZES)
    assert max(v for d in diffs for v in d.values()) <= TOLERANCE, diffs
