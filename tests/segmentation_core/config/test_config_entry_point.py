"""``segmentation_core.config.build_cfg``: family-scoped defaults decided by the YAML, the official files
loaded unchanged (their ``eval`` size expressions included, nothing else that runs code), paths
relative to the YAML, and the CPU device default."""
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from segmentation_core.config import (
    ConfigFamilyError,
    ConfigYAMLError,
    assemble_config,
    build_cfg,
    config_tree,
    evaluate_size_expression,
    registered_families,
)
from tests.helpers.paths import REPO as REPOSITORY

REPO = REPOSITORY
CONFIGS = REPO / "configs"
KEYS = REPO / "tests" / "fixtures" / "keys"
M2F_YAMLS = sorted((CONFIGS / "mask2former").rglob("*.yaml"))
MF_YAMLS = sorted((CONFIGS / "maskformer").rglob("*.yaml"))
ALL_YAMLS = sorted(CONFIGS.rglob("*.yaml"))


def _rel(p):
    return str(p.relative_to(REPO))


def test_families_registered():
    assert [f.name() for f in registered_families()] == ["Mask2Former", "MaskFormer", "ReSTR", "Segmenter"]


@pytest.mark.parametrize("path", M2F_YAMLS + MF_YAMLS, ids=_rel)
def test_official_yaml_builds_its_own_family(path):
    cfg = build_cfg(str(path))
    mf = cfg.MODEL.MASK_FORMER
    if "META_ARCHITECTURE" not in config_tree(str(path)).get("MODEL", {}):
        # a Base file of data and solver settings: no model, no family
        assert path.name.startswith("Base-") and cfg.model_family == ""
        return
    if cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor":  # MaskFormer's per-pixel baselines
        assert "maskformer" in path.parts and cfg.MODEL.SEM_SEG_HEAD.NAME.startswith("PerPixelBaseline")
        expected = "MaskFormer"
    else:
        assert cfg.MODEL.META_ARCHITECTURE == "MaskFormer"
        expected = "Mask2Former" if "mask2former" in path.parts else "MaskFormer"
    assert cfg.model_family == expected
    if cfg.MODEL.META_ARCHITECTURE == "MaskFormer":
        decoder = "MultiScaleMaskedTransformerDecoder" if expected == "Mask2Former" else "StandardTransformerDecoder"
        assert mf.TRANSFORMER_DECODER_NAME == decoder
    # the official size lists are evaluated from the file's own expression where it has one
    text = path.read_text()
    if "!!python/object/apply:eval" in text:
        assert all(isinstance(v, int) for v in cfg.INPUT.MIN_SIZE_TRAIN) and len(cfg.INPUT.MIN_SIZE_TRAIN) > 1


@pytest.mark.parametrize("name", sorted(p.stem for p in KEYS.glob("*.yaml")))
def test_flat_official_dump_builds_the_official_key_list(name):
    cfg = build_cfg(str(KEYS / f"{name}.yaml"))
    assert cfg.model_family == ("Mask2Former" if name.startswith("m2f") else "MaskFormer")
    model = build_model(cfg)
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == list(json.loads((KEYS / f"{name}.json").read_text()).items())  # names, order, shapes


def test_assembly_does_not_depend_on_the_order_of_the_family_adders():
    families = registered_families()
    for family in families + [None]:
        dumps = {assemble_config(family, list(order)).dump() for order in itertools.permutations(families)}
        assert len(dumps) == 1, family


_DUMP_ALL = """
import hashlib, json, sys
for name in sys.argv[2].split(","):
    __import__(name)
from segmentation_core.config import build_cfg
out = {}
for path in sys.argv[3:]:
    # every key and value (json of the nested dicts: much faster than the YAML dump)
    out[path] = hashlib.sha256(json.dumps(build_cfg(path), sort_keys=True).encode()).hexdigest()
json.dump(out, open(sys.argv[1], "w"))
"""


def test_every_config_is_the_same_whatever_the_plugin_import_order(tmp_path):
    """Two processes import the plugins in opposite orders (and call their adders on a throwaway
    config first, as a user might): every YAML under configs/ gives the same config."""
    paths = [str(p) for p in ALL_YAMLS]
    procs, outs = [], []
    for i, order in enumerate(("restr_d2,maskformer_d2", "maskformer_d2,restr_d2")):
        out = tmp_path / f"{i}.json"
        prelude = (f"from detectron2.config import get_cfg\nc = get_cfg()\n"
                   + ("import restr_d2; restr_d2.add_restr_config(c)\n" if i == 0 else
                      "import maskformer_d2; maskformer_d2.add_mask_former_config(c)\n"))
        # both at once: each spends most of its time importing torch and detectron2
        procs.append(subprocess.Popen([sys.executable, "-c", prelude + _DUMP_ALL, str(out), order, *paths],
                                      cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")))
        outs.append(out)
    results = []
    for p, out in zip(procs, outs):
        _, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-3000:]
        results.append(json.loads(out.read_text()))
    assert len(results[0]) == len(ALL_YAMLS) > 100
    assert results[0] == results[1]


def test_shared_keys_take_the_owning_familys_defaults():
    """The keys several families define with different defaults (README table)."""
    m2f = build_cfg(str(CONFIGS / "shapes" / "mask2former_R18_panoptic.yaml"))
    restr = build_cfg(str(CONFIGS / "shapes" / "restr_shapes.yaml"))
    seg = assemble_config(registered_families()[3])  # Segmenter: the engine's solver defaults
    assert m2f.model_family == "Mask2Former" and restr.model_family == "ReSTR"
    base_restr = assemble_config(registered_families()[2])
    assert (base_restr.SOLVER.OPTIMIZER, base_restr.SOLVER.BACKBONE_MULTIPLIER, base_restr.INPUT.IMAGE_SIZE) == ("SGD", 1.0, 480)
    base_m2f = assemble_config(registered_families()[0])
    assert (base_m2f.SOLVER.OPTIMIZER, base_m2f.SOLVER.BACKBONE_MULTIPLIER, base_m2f.INPUT.IMAGE_SIZE) == ("ADAMW", 0.1, 1024)
    assert base_m2f.INPUT.DATASET_MAPPER_NAME == "mask_former_semantic" and base_restr.INPUT.DATASET_MAPPER_NAME == ""
    assert (seg.SOLVER.OPTIMIZER, seg.SOLVER.BACKBONE_MULTIPLIER) == ("SGD", 1.0)


def test_merge_from_file_on_an_undecided_config_takes_the_files_family(tmp_path):
    mf = str(CONFIGS / "maskformer" / "ade20k-150" / "maskformer_R50_bs16_160k.yaml")
    cfg = build_cfg()
    assert cfg.model_family is None
    cfg.merge_from_file(mf)
    assert cfg.model_family == "MaskFormer"
    assert cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == "StandardTransformerDecoder"
    assert cfg.dump() == build_cfg(mf).dump()
    # a YAML of another family into it would build a hybrid
    with pytest.raises(ConfigFamilyError, match="hybrid"):
        cfg.merge_from_file(str(CONFIGS / "shapes" / "restr_shapes.yaml"))
    # changes made before the first YAML cannot be kept under another family's defaults
    cfg = build_cfg()
    cfg.SOLVER.BASE_LR = 0.5
    with pytest.raises(ConfigFamilyError, match=r"build_cfg\(config_file, opts\)"):
        cfg.merge_from_file(mf)


def test_paths_resolve_from_the_yaml_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = build_cfg(str(CONFIGS / "shapes" / "restr_shapes.yaml"))
    vocab = cfg.MODEL.RESTR.LANGUAGE.VOCAB_FILE
    assert os.path.isabs(vocab) and Path(vocab) == CONFIGS / "restr" / "shapes_vocabulary.txt"
    # a path next to the YAML wins; a path found nowhere stays as written
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "vocab.txt").write_text("a\n")
    yaml = tmp_path / "cfgs" / "x.yaml"
    yaml.write_text(f'_BASE_: "{CONFIGS / "shapes" / "restr_shapes.yaml"}"\n'
                    'MODEL:\n  RESTR:\n    LANGUAGE:\n      VOCAB_FILE: "vocab.txt"\n      EMBEDDING_FILE: "nowhere/e.npy"\n')
    cfg = build_cfg(str(yaml))
    assert cfg.MODEL.RESTR.LANGUAGE.VOCAB_FILE == str(tmp_path / "cfgs" / "vocab.txt")
    assert cfg.MODEL.RESTR.LANGUAGE.EMBEDDING_FILE == "nowhere/e.npy"
    # "pypkg:" and empty values are left alone
    assert build_cfg(str(CONFIGS / "shapes" / "restr_shapes_minilm.yaml")).MODEL.RESTR.LANGUAGE.HF_PATH.startswith("pypkg:")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU default applies where CUDA is absent")
def test_device_default_fits_a_cpu_machine(tmp_path):
    official = str(CONFIGS / "mask2former" / "coco" / "panoptic-segmentation" / "maskformer2_R50_bs16_50ep.yaml")
    assert build_cfg(official).MODEL.DEVICE == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        build_cfg(official, ["MODEL.DEVICE", "cuda"])
    explicit = tmp_path / "cuda.yaml"
    explicit.write_text(f'_BASE_: "{official}"\nMODEL:\n  DEVICE: "cuda"\n')
    with pytest.raises(RuntimeError, match="set in the config or on the command line"):
        build_cfg(str(explicit))


def test_size_expressions_are_evaluated_without_running_code(tmp_path):
    assert evaluate_size_expression("[int(x * 0.1 * 640) for x in range(5, 21)]") == [int(x * 0.1 * 640) for x in range(5, 21)]
    for bad in ["__import__('os').system('touch PWNED')", "[x.__class__ for x in range(3)]", "open('f')",
                "[0] * 10000000000", "range(10**12)", "[y for x in range(99) for y in range(99)]", "'a'"]:
        with pytest.raises(ValueError):
            evaluate_size_expression(bad)
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'MODEL:\n  WEIGHTS: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigYAMLError, match=r"evil.yaml, line 2, column \d+: a Python tag !!python/object/apply:os.system is refused"):
        build_cfg(str(evil))
    evil.write_text(f'INPUT:\n  MIN_SIZE_TRAIN: !!python/object/apply:eval ["__import__(\'os\').system(\'touch {marker}\')"]\n')
    with pytest.raises(ConfigYAMLError, match=r"evil.yaml, line 2, column \d+: the expression"):
        build_cfg(str(evil))
    with pytest.raises(ConfigYAMLError):
        build_cfg().merge_from_file(str(evil))
    assert not marker.exists()
