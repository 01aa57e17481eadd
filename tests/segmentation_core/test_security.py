"""No file the project reads can run code (issue 19).

Every entry point gets a malicious file whose loading would create a marker file (a YAML
``!!python/object/apply:os.system`` tag, a pickle whose ``__reduce__`` calls ``os.system``): the
marker is never created and the error names the file. Legitimate files still load: every YAML
under configs/ and tests/fixtures (identical to fvcore's loading), the parity fixtures,
official-format ``.pkl`` checkpoints, ``.safetensors`` checkpoints.
"""
import collections
import copyreg
import glob
import importlib.util
import json
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import DefaultPredictor
from detectron2.modeling import build_model

import maskformer_d2  # noqa: F401  (registers the models)
import restr_d2  # noqa: F401
from tests.helpers.scripts import load_script
import train_net  # the repo root is on sys.path (tests/conftest.py)
from segmentation_core.config_checks import merge_from_file_checked
from segmentation_core.safe_checkpoint import (
    SafeDetectionCheckpointer,
    load_checkpoint_file,
    save_checkpoint,
)
from segmentation_core.safe_pickle import UnsafePickleError, safe_pickle_load, safe_pickle_loads, torch_load_weights_only
from segmentation_core.config import (
    SafeCfgNode,
    UnsafeYAMLError,
    load_yaml_with_base,
    make_cfg_safe,
    safe_merge_from_file,
)
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)
SHAPES = os.path.join(REPO, "configs", "shapes")
SEGMENTER_CFG = os.path.join(SHAPES, "segmenter_linear.yaml")
FIXTURES = os.path.join(REPO, "tests", "fixtures")


class _RunsCommand:
    """Pickled as a call of ``os.system("touch <marker>")``: unpickling it creates the marker."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a malicious file ran code"


def _evil_yaml(path, marker, base=None):
    lines = [f"_BASE_: {json.dumps(base)}"] if base else []
    lines += ["MODEL:", f"  WEIGHTS: !!python/object/apply:os.system [\"touch '{marker}'\"]"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _evil_pkl(path, marker, protocol=2):
    """A detectron2 model-zoo-layout .pkl whose one "array" runs a command."""
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": _RunsCommand(marker)}, "__author__": "evil"}, f, protocol=protocol)
    return str(path)


def _evil_pth(path, marker):
    torch.save({"model": {"w": _RunsCommand(marker)}}, path)
    return str(path)


def _segmenter_cfg(*opts):
    cfg = train_net.build_cfg()
    merge_from_file_checked(cfg, SEGMENTER_CFG)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *opts])
    return cfg


# -- YAML ------------------------------------------------------------------------------------------
def test_python_tag_error_names_file_line_and_tag(tmp_path, marker):
    path = _evil_yaml(tmp_path / "evil.yaml", marker)
    with pytest.raises(UnsafeYAMLError) as e:
        load_yaml_with_base(path)
    assert (e.value.path, e.value.line) == (path, 2)
    msg = str(e.value)
    assert path in msg and "line 2" in msg and "!!python/object/apply:os.system" in msg
    assert str(pickle.loads(pickle.dumps(e.value))) == msg  # crosses process boundaries intact
    # any tag the safe loader does not know is refused the same way (not silently unsafe-loaded)
    (tmp_path / "custom.yaml").write_text("A: 1\nB: !mytag 3\n")
    with pytest.raises(UnsafeYAMLError, match=r"custom.yaml, line 2.*unknown tag !mytag"):
        load_yaml_with_base(str(tmp_path / "custom.yaml"))


def test_python_tag_in_a_base_file_names_that_file(tmp_path, marker):
    (tmp_path / "base").mkdir()
    base = _evil_yaml(tmp_path / "base" / "evil_base.yaml", marker)
    top = tmp_path / "top.yaml"
    top.write_text('_BASE_: "base/evil_base.yaml"\nSEED: 3\n')
    with pytest.raises(UnsafeYAMLError, match="evil_base.yaml, line 2"):
        load_yaml_with_base(str(top))
    with pytest.raises(UnsafeYAMLError) as e:
        train_net.build_cfg().merge_from_file(str(top))
    assert e.value.path.endswith("evil_base.yaml") and os.path.samefile(e.value.path, base)


def test_train_net_refuses_python_tag(tmp_path, marker):
    path = _evil_yaml(tmp_path / "evil.yaml", marker, base=SEGMENTER_CFG)
    with pytest.raises(UnsafeYAMLError, match="evil.yaml, line 3"):
        train_net.cli(["--config-file", path, "OUTPUT_DIR", str(tmp_path / "out")])


def test_demo_refuses_python_tag(tmp_path, marker):
    demo = load_script("demo/demo.py", "restr_d2_demo_security")
    path = _evil_yaml(tmp_path / "evil.yaml", marker, base=SEGMENTER_CFG)
    with pytest.raises(UnsafeYAMLError, match="evil.yaml"):
        demo.main(["--config-file", path, "--input", str(tmp_path / "none.png"), "--output", str(tmp_path / "vis")])


def test_merge_from_file_of_our_configs_and_of_get_cfg_refuses_python_tag(tmp_path, marker):
    path = _evil_yaml(tmp_path / "evil.yaml", marker)
    cfg = train_net.build_cfg()
    assert isinstance(cfg, SafeCfgNode) and isinstance(cfg.MODEL.MASK_FORMER, SafeCfgNode)
    with pytest.raises(UnsafeYAMLError):
        cfg.merge_from_file(path)  # detectron2's default allow_unsafe=True has no effect
    with pytest.raises(UnsafeYAMLError):
        cfg.merge_from_file(path, allow_unsafe=True)
    with pytest.raises(UnsafeYAMLError):
        safe_merge_from_file(get_cfg(), path)
    with pytest.raises(UnsafeYAMLError):
        merge_from_file_checked(get_cfg(), path)
    with pytest.raises(UnsafeYAMLError):
        train_net.load_config(path)


def test_make_cfg_safe_keeps_keys_values_and_flags():
    from detectron2.config import CfgNode

    cfg = get_cfg()
    cfg.MODEL.set_new_allowed(True)
    reference = cfg.clone()
    cfg.freeze()
    safe_cfg = make_cfg_safe(cfg)
    assert safe_cfg is cfg and type(cfg) is SafeCfgNode and cfg.is_frozen()
    assert cfg.MODEL.is_new_allowed() and not cfg.INPUT.is_new_allowed()
    assert "__class__" not in cfg and dict(cfg) == dict(reference)
    assert isinstance(cfg.clone().MODEL, SafeCfgNode) and isinstance(cfg, CfgNode)


def test_base_loop_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text('_BASE_: "b.yaml"\n')
    (tmp_path / "b.yaml").write_text('_BASE_: "a.yaml"\n')
    with pytest.raises(ValueError, match="loops"):
        load_yaml_with_base(str(tmp_path / "a.yaml"))


def _all_yaml_files():
    files = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
                   + glob.glob(os.path.join(FIXTURES, "**", "*.yaml"), recursive=True))
    assert len(files) > 100
    return files


def test_every_project_yaml_loads_as_fvcore_loads_it():
    from fvcore.common.config import CfgNode as FvCfgNode

    for path in _all_yaml_files():
        # our own files are trusted: fvcore may evaluate the official size expressions (its
        # unsafe loader), which ours evaluates with the restricted evaluator, to the same lists
        assert load_yaml_with_base(path) == FvCfgNode.load_yaml_with_base(path, allow_unsafe=True), path


def test_every_project_yaml_merges_into_build_cfg():
    base = train_net.build_cfg()
    for path in _all_yaml_files():
        if os.path.basename(path).startswith("Base-") or "/fixtures/" in path:
            # bases alone, and the fixtures' partial configs, are merged through the configs above
            continue
        cfg = base.clone()
        merge_from_file_checked(cfg, path)
        assert isinstance(cfg, SafeCfgNode), path  # build_cfg's ProjectCfgNode is a SafeCfgNode


def test_dumped_config_reloads_safely(tmp_path):
    """The config.yaml that default_setup writes into OUTPUT_DIR reloads (no Python tags)."""
    cfg = _segmenter_cfg()
    (tmp_path / "config.yaml").write_text(cfg.dump())
    again = train_net.build_cfg()
    merge_from_file_checked(again, str(tmp_path / "config.yaml"))
    import yaml

    # (the dump may hold YAML anchors for lists shared between keys: plain YAML, loaded safely)
    assert yaml.safe_load(again.dump()) == yaml.safe_load(cfg.dump())


# -- the restricted unpickler -------------------------------------------------------------------------
def _py2_pickle():
    """What Python 2 writes for {"sent": "caf\\xc3\\xa9", "ids": [1, 2]} (str as 8-bit strings)."""
    return (b"\x80\x02}q\x00(U\x04sentq\x01U\x05caf\xc3\xa9q\x02U\x03idsq\x03]q\x04(K\x01K\x02eu.")


def test_allowed_data_round_trips():
    data = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "f64_fortran": np.asfortranarray(np.ones((2, 3))),
        "u8": np.array([1, 255], np.uint8),
        "structured": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        "scalar": np.float32(1.5),
        "ordered": collections.OrderedDict([("x", 1), ("y", [1.0, None, True])]),
        "set": {1, 2}, "frozen": frozenset({"a"}), "complex": 1 + 2j,
        "bytes": b"\x00\xff", "empty_bytes": b"", "bytearray": bytearray(b"ab"), "tuple": (1, "two"),
    }
    for protocol in (2, 3, 4, 5):
        loaded = safe_pickle_loads(pickle.dumps(data, protocol=protocol))
        assert set(loaded) == set(data), protocol
        for k, v in data.items():
            if isinstance(v, np.ndarray):
                assert loaded[k].dtype == v.dtype and np.array_equal(loaded[k], v), (protocol, k)
            else:
                assert loaded[k] == v and type(loaded[k]) is type(v), (protocol, k)
    assert safe_pickle_loads(_py2_pickle(), encoding="utf-8") == {"sent": "café", "ids": [1, 2]}
    assert safe_pickle_loads(_py2_pickle(), encoding="latin1")["sent"] == "cafÃ©"


def _py2_float32_array(values):
    """Pickle opcodes Python 2 + NumPy 1.x write for ``np.array(values, "<f4")``: the buffer is
    an 8-bit ``str`` (SHORT_BINSTRING), which only ``encoding="latin1"`` turns back into bytes."""
    raw = np.asarray(values, "<f4").tobytes()
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01K"
            + bytes([len(values)]) + b"\x85cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R(K\x03U\x01<NNN"
            b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U" + bytes([len(raw)]) + raw + b"tb")


def test_python2_caffe2_pkl_loads(tmp_path):
    """A Detectron (Caffe2) ImageNet .pkl as Python 2 wrote it: {"blobs": {name: array}}."""
    data = (b"\x80\x02}(U\x05blobs}(U\x07conv1_w" + _py2_float32_array([1.0, 2.0, 3.0])
            + b"U\x10conv1_w_momentum" + _py2_float32_array([0.0, 0.0, 0.0]) + b"uu.")
    (tmp_path / "R-50.pkl").write_bytes(data)
    ckpt = load_checkpoint_file(str(tmp_path / "R-50.pkl"))
    assert ckpt["__author__"] == "Caffe2" and ckpt["matching_heuristics"] is True
    assert list(ckpt["model"]) == ["conv1_w"]  # momentum blobs dropped, as detectron2 does
    assert ckpt["model"]["conv1_w"].dtype == np.float32
    assert ckpt["model"]["conv1_w"].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_code_running_pickles_are_refused(tmp_path, marker, protocol):
    path = _evil_pkl(tmp_path / "evil.pkl", marker, protocol)
    with pytest.raises(UnsafePickleError) as e:
        safe_pickle_load(path)
    assert e.value.source == path and e.value.global_name in ("posix.system", "os.system")
    assert str(pickle.loads(pickle.dumps(e.value))) == str(e.value)
    assert path in str(e.value) and e.value.global_name in str(e.value)


def _call_global_pickle(module, name):
    """protocol-2 pickle that calls ``module.name()`` (GLOBAL, empty tuple, REDUCE)."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R."


@pytest.mark.parametrize("module,name", [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("__builtin__", "eval"), ("copy_reg", "_reconstructor"), ("copyreg", "__newobj__"), ("os", "system"),
    ("posix", "system"), ("subprocess", "Popen"), ("numpy", "load"), ("numpy.lib.npyio", "load"),
    ("torch._utils", "_rebuild_tensor_v2"), ("collections", "defaultdict"), ("numpy.core.multiarray", "empty"),
])
def test_refused_globals(module, name):
    with pytest.raises(UnsafePickleError) as e:
        safe_pickle_loads(_call_global_pickle(module, name), source="x.pkl")
    assert e.value.global_name == f"{module}.{name}" and str(e.value).startswith(f"x.pkl: refused to unpickle the global {module}.{name}")


def test_codecs_encode_only_as_text_to_bytes():
    ok = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x06\x00\x00\x00latin1\x86R."
    assert safe_pickle_loads(ok) == b"ab"
    bad = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x06\x00\x00\x00base64\x86R."
    with pytest.raises(pickle.UnpicklingError, match="text codec"):
        safe_pickle_loads(bad)


def test_extension_registry_goes_through_the_allow_list(marker):
    module = os.system.__module__  # "posix": what pickle records
    copyreg.add_extension(module, "system", 240)
    try:
        data = pickle.dumps(_RunsCommand(marker), protocol=2)
        assert b"\x82\xf0" in data  # EXT1 240: the global is named by a code, not by text
        with pytest.raises(UnsafePickleError, match=f"{module}.system"):
            safe_pickle_loads(data)
    finally:
        copyreg.remove_extension(module, "system", 240)


def test_torch_load_refusal_names_file_and_global(tmp_path, marker):
    path = _evil_pth(tmp_path / "evil.pth", marker)
    with pytest.raises(UnsafePickleError) as e:
        torch_load_weights_only(path)
    assert e.value.source == path and e.value.global_name == "posix.system"
    # a corrupt file is not reported as unsafe
    (tmp_path / "bad.pth").write_bytes(b"\x80\x02garbage" * 4)
    with pytest.raises(pickle.UnpicklingError) as e:
        torch_load_weights_only(str(tmp_path / "bad.pth"))
    assert not isinstance(e.value, UnsafePickleError)


# -- checkpoints ------------------------------------------------------------------------------------
def test_detection_checkpointer_is_safe_once_the_plugin_is_imported():
    from segmentation_core.safe_checkpoint import _safe_load_file

    assert DetectionCheckpointer._load_file is _safe_load_file


def test_default_predictor_refuses_malicious_pkl_and_pth(tmp_path, marker):
    for path in (_evil_pkl(tmp_path / "evil.pkl", marker), _evil_pth(tmp_path / "evil.pth", marker)):
        cfg = _segmenter_cfg("MODEL.WEIGHTS", path)
        with pytest.raises(UnsafePickleError) as e:
            DefaultPredictor(cfg)
        assert e.value.source == path and path in str(e.value)


def test_referring_predictor_refuses_malicious_pkl(tmp_path, marker):
    from restr_d2.engine.predictor import ReferringPredictor

    cfg = train_net.build_cfg()
    merge_from_file_checked(cfg, os.path.join(SHAPES, "restr_shapes.yaml"))
    cfg.MODEL.WEIGHTS = _evil_pkl(tmp_path / "evil.pkl", marker)
    with pytest.raises(UnsafePickleError, match="evil.pkl"):
        ReferringPredictor(cfg)


def test_eval_only_refuses_malicious_pkl(tmp_path, marker):
    path = _evil_pkl(tmp_path / "evil.pkl", marker)
    with pytest.raises(UnsafePickleError, match="evil.pkl.*posix.system"):
        train_net.cli(["--config-file", SEGMENTER_CFG, "--eval-only", "MODEL.WEIGHTS", path,
                       "OUTPUT_DIR", str(tmp_path / "out")])


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    """4 + 2 synthetic images registered as secshapes_*."""
    from segmentation_core.data.shapes import ShapesConfig, ensure_shapes, register_shapes

    root = str(tmp_path_factory.mktemp("datasets"))
    config = ShapesConfig(num_train=4, num_val=2, seed=0)
    register_shapes(root, config, prefix="secshapes")
    ensure_shapes(root, config, progress=False)
    return root


def test_training_start_refuses_malicious_pkl(tmp_path, marker, tiny_shapes):
    path = _evil_pkl(tmp_path / "evil.pkl", marker)
    with pytest.raises(UnsafePickleError, match="evil.pkl"):
        train_net.cli(["--config-file", SEGMENTER_CFG, "MODEL.WEIGHTS", path, "OUTPUT_DIR", str(tmp_path / "out"),
                       "DATASETS.TRAIN", "('secshapes_sem_seg_train',)", "DATASETS.TEST", "('secshapes_sem_seg_val',)",
                       "SOLVER.MAX_ITER", "1"])


def test_resume_stops_at_a_malicious_last_checkpoint(tmp_path, marker):
    """Not mistaken for a corrupt file: no rename, no fallback to an older checkpoint."""
    from segmentation_core.resume import ResilientCheckpointer

    model = build_model(_segmenter_cfg())
    out = tmp_path / "out"
    out.mkdir()
    checkpointer = ResilientCheckpointer(model, str(out))
    checkpointer.save("model_0000000")
    evil = _evil_pth(out / "model_0000001.pth", marker)
    checkpointer.tag_last_checkpoint("model_0000001.pth")
    with pytest.raises(UnsafePickleError, match="model_0000001.pth"):
        checkpointer.resume_or_load("", resume=True)
    assert os.path.isfile(evil) and not os.path.exists(evil + ".corrupt")


def _model_zoo_pkl(state_dict, path, protocol):
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state_dict.items()}, "__author__": "official"}, f,
                    protocol=protocol)
    return str(path)


def test_official_format_pkl_of_the_fixtures_load(tmp_path):
    """The parity fixtures' state dicts saved as detectron2 model-zoo .pkl (protocol 2 as the
    official files, and 4) load unchanged."""
    names = ["m2f_head/state_dict.pt", "mf_head/state_dict.pt", "restr_small/state_dict.pt"]
    for name in names:
        sd = torch_load_weights_only(os.path.join(FIXTURES, name))  # {key: tensor}
        assert len(sd) > 100 and all(isinstance(v, torch.Tensor) for v in sd.values()), name
        for protocol in (2, 4):
            ckpt = load_checkpoint_file(_model_zoo_pkl(sd, tmp_path / f"{protocol}.pkl", protocol))
            assert ckpt["__author__"] == "official" and set(ckpt["model"]) == set(sd)
            assert all(np.array_equal(ckpt["model"][k], sd[k].numpy()) for k in sd), name


def test_every_parity_fixture_loads_weights_only():
    files = sorted(glob.glob(os.path.join(FIXTURES, "**", "*.pt"), recursive=True)
                   + glob.glob(os.path.join(FIXTURES, "**", "*.pth"), recursive=True))
    assert len(files) >= 20
    for path in files:
        torch_load_weights_only(path)


def test_official_pkl_loads_into_default_predictor(tmp_path):
    torch.manual_seed(0)
    sd = build_model(_segmenter_cfg()).state_dict()
    path = _model_zoo_pkl(sd, tmp_path / "model_final.pkl", 2)
    predictor = DefaultPredictor(_segmenter_cfg("MODEL.WEIGHTS", path))
    for k, v in predictor.model.state_dict().items():
        assert torch.equal(v, sd[k]), k


# -- .safetensors -------------------------------------------------------------------------------------
def test_safetensors_weights_load_through_default_predictor_and_eval_only_loader(tmp_path):
    torch.manual_seed(1)
    sd = build_model(_segmenter_cfg()).state_dict()
    path = save_checkpoint({"model": sd, "__author__": "test"}, str(tmp_path / "model.safetensors"))
    ckpt = load_checkpoint_file(path)
    assert ckpt["__author__"] == "test" and set(ckpt["model"]) == set(sd)  # safetensors sorts names
    predictor = DefaultPredictor(_segmenter_cfg("MODEL.WEIGHTS", path))
    assert all(torch.equal(v, sd[k]) for k, v in predictor.model.state_dict().items())
    from segmentation_core.checkpoint_policy import load_weights_checked

    model = build_model(_segmenter_cfg())
    incompatible = load_weights_checked(model, path)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    assert all(torch.equal(v, sd[k]) for k, v in model.state_dict().items())


# -- dataset pickles ----------------------------------------------------------------------------------
def test_refer_dataset_refuses_malicious_refs_pickle(tmp_path, marker):
    from detectron2.data import DatasetCatalog

    from restr_d2.data.datasets.refcoco import register_refer_dataset

    refer_dir = tmp_path / "refevil"
    (refer_dir / "images").mkdir(parents=True)
    (refer_dir / "instances.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    refs_path = refer_dir / "refs(unc).p"
    with open(refs_path, "wb") as f:
        pickle.dump([{"split": "train", "sentences": _RunsCommand(marker)}], f, protocol=2)
    name = "security_test_refevil_train"
    register_refer_dataset(name, str(refer_dir), "unc", "train", str(refer_dir / "images"))
    try:
        with pytest.raises(UnsafePickleError) as e:
            DatasetCatalog.get(name)
        assert e.value.source == str(refs_path)
    finally:
        DatasetCatalog.remove(name)


def test_ade20k_full_index_refuses_malicious_pickle(tmp_path, marker):
    base = tmp_path / "ADE20K_2021_17_01"
    base.mkdir()
    with open(base / "index_ade20k.pkl", "wb") as f:
        pickle.dump({"folder": _RunsCommand(marker), "filename": []}, f, protocol=4)
    sys.path.insert(0, os.path.join(REPO, "datasets"))
    try:
        prepare = load_script("datasets/prepare_ade20k_full_sem_seg.py", "prepare_ade20k_full_security")
    finally:
        sys.path.remove(os.path.join(REPO, "datasets"))
    with pytest.raises(UnsafePickleError, match="index_ade20k.pkl"):
        prepare.convert(str(tmp_path))


# -- converters ---------------------------------------------------------------------------------------
def _converter_calls(evil, out, tmp_path):
    hf_config = tmp_path / "config.json"
    from transformers import Mask2FormerConfig

    Mask2FormerConfig().to_json_file(str(hf_config))
    return {
        "tools/convert/convert_segmenter_checkpoint.py --from segmenter": ["--from", "segmenter", evil, out],
        "tools/convert/convert_segmenter_checkpoint.py --from timm": ["--from", "timm", evil, out, "--image-size", "64", "64"],
        "tools/convert/convert_pretrained_backbone.py": ["--format", "torchvision", evil, out],
        "tools/convert/convert_restr_checkpoint.py": [evil, out],
        "tools/convert/convert_hf_mask2former.py": ["--hf-model", evil, "--hf-config", str(hf_config), "--output", out],
    }


def test_converters_refuse_malicious_input(tmp_path, marker):
    evil = _evil_pth(tmp_path / "evil.pth", marker)
    for i, (what, argv) in enumerate(_converter_calls(evil, str(tmp_path / "out.safetensors"), tmp_path).items()):
        tool = importlib.import_module(what.split()[0][: -len(".py")].replace("/", "."))
        with pytest.raises(UnsafePickleError) as e:
            tool.main(argv)
        assert e.value.source == evil and "posix.system" in str(e.value), what
        assert not (tmp_path / "out.safetensors").exists(), what


def test_the_payloads_run_code_when_loaded_unsafely(tmp_path):
    """The malicious files above are live: detectron2/fvcore's unsafe YAML fallback and a plain
    ``pickle.load`` do run them (so the refusals above are what keeps the marker absent)."""
    from fvcore.common.config import CfgNode as FvCfgNode

    yaml_marker, pkl_marker = tmp_path / "yaml_ran", tmp_path / "pkl_ran"
    FvCfgNode.load_yaml_with_base(_evil_yaml(tmp_path / "evil.yaml", yaml_marker), allow_unsafe=True)
    with open(_evil_pkl(tmp_path / "evil.pkl", pkl_marker), "rb") as f:
        pickle.load(f, encoding="latin1")
    assert yaml_marker.exists() and pkl_marker.exists()


# -- converters write .safetensors ------------------------------------------------------------------
def _assert_same_tensors(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), k


def test_backbone_converter_writes_safetensors_equal_to_its_pkl(tmp_path):
    import torchvision

    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone import build_resnet_backbone

    from tools.convert import convert_pretrained_backbone as tool
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    tool.main(["--format", "torchvision", str(tmp_path / "r18.pth"), str(tmp_path / "r18.pkl")])
    tool.main(["--format", "torchvision", str(tmp_path / "r18.pth"), str(tmp_path / "r18.safetensors")])
    from_pkl = load_checkpoint_file(str(tmp_path / "r18.pkl"))
    from_st = load_checkpoint_file(str(tmp_path / "r18.safetensors"))
    _assert_same_tensors(from_pkl["model"], from_st["model"])
    assert from_st["matching_heuristics"] is True and from_st["__author__"] == "torchvision"

    # loads into model.backbone through the matching heuristics, like the .pkl
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 18, 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    wrapper = torch.nn.Module()
    wrapper.backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    checkpointer = SafeDetectionCheckpointer(wrapper)
    incompatible = checkpointer._load_model(checkpointer._load_file(str(tmp_path / "r18.safetensors")))
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    _assert_same_tensors({k[len("backbone."):]: v for k, v in wrapper.state_dict().items()}, from_st["model"])


def test_segmenter_converter_writes_safetensors(tmp_path):
    from restr_d2.modeling.segmenter.checkpoint import ENCODER_ONLY_FLAG, SegmenterCheckpointer

    from tools.convert import convert_segmenter_checkpoint as tool
    torch.manual_seed(2)
    sd = build_model(_segmenter_cfg()).state_dict()
    torch.save({"model": sd, "optimizer": {"state": {}, "param_groups": []}, "n_cls": 8, "epoch": 3,
                "lr_scheduler": {"base_lrs": [0.01], "last_epoch": 10, "power": 0.9}}, tmp_path / "official.pth")
    tool.main(["--from", "segmenter", str(tmp_path / "official.pth"), str(tmp_path / "seg.safetensors"),
               "--encoder-only"])
    ckpt = load_checkpoint_file(str(tmp_path / "seg.safetensors"))
    assert ckpt[ENCODER_ONLY_FLAG] is True
    model = build_model(_segmenter_cfg())
    SegmenterCheckpointer(model).load(str(tmp_path / "seg.safetensors"))
    for k, v in model.state_dict().items():
        if k.startswith("encoder."):
            assert torch.equal(v, sd[k]), k


def test_restr_converter_writes_safetensors(tmp_path):
    from tools.convert import convert_restr_checkpoint as tool
    cfg = train_net.build_cfg()
    merge_from_file_checked(cfg, os.path.join(SHAPES, "restr_shapes.yaml"))
    torch.manual_seed(3)
    sd = build_model(cfg).state_dict()
    torch.save(sd, tmp_path / "official.pth")
    tool.main([str(tmp_path / "official.pth"), str(tmp_path / "restr.safetensors"),
               "--config-file", os.path.join(SHAPES, "restr_shapes.yaml")])
    _assert_same_tensors(load_checkpoint_file(str(tmp_path / "restr.safetensors"))["model"], sd)
