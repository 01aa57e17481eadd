"""Determinism, verification, lazy regeneration and process safety of the shapes generator."""
import json
import logging
import os
import threading

import pytest

from segmentation_core.data.shapes import ShapesConfig, ensure_shapes, generate_shapes, verify_shapes
from segmentation_core.data.shapes import cache as shapes_cache
from segmentation_core.data.shapes.cache import config_from_env

SMALL = ShapesConfig(num_train=2, num_val=1, seed=0)


def _hashes(manifest):
    return {k: v["sha256"] for k, v in manifest["files"].items()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path, shapes_dir):
    a = _hashes(generate_shapes(str(tmp_path / "a"), SMALL, progress=False))
    b = _hashes(generate_shapes(str(tmp_path / "b"), SMALL, progress=False))
    assert a == b
    c = _hashes(generate_shapes(str(tmp_path / "c"), ShapesConfig(2, 1, seed=1), progress=False))
    assert a.keys() == c.keys()
    for f in ("images/train_000000.png", "panoptic/train_000001.png", "refshapes/refs(unc).p"):
        assert a[f] != c[f]
    # Each image has its own random stream: the first images do not depend on the split size.
    tiny = _hashes(json.loads((shapes_dir / "manifest.json").read_text()))
    for f in ("images/train_000000.png", "images/train_000001.png", "sem_seg/val_000000.png",
              "panoptic/train_000001.png"):
        assert a[f] == tiny[f]


def test_corruption_is_detected_and_regenerated(tmp_path, caplog):
    root = str(tmp_path)
    d = ensure_shapes(root, SMALL, progress=False)
    assert verify_shapes(d, SMALL) == []
    manifest = json.loads(open(os.path.join(d, "manifest.json")).read())
    target = os.path.join(d, "images", "train_000001.png")
    data = bytearray(open(target, "rb").read())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    open(target, "wb").write(bytes(data))
    os.remove(os.path.join(d, "annotations", "instances_val.json"))
    problems = verify_shapes(d, SMALL)
    assert any("checksum" in p and "train_000001.png" in p for p in problems)
    assert any("missing" in p and "instances_val.json" in p for p in problems)

    with pytest.raises(RuntimeError, match="DETECTRON2_DATASETS") as err:
        ensure_shapes(root, SMALL, regenerate=False, progress=False)
    assert "train_000001.png" in str(err.value)

    with caplog.at_level(logging.WARNING, logger="segmentation_core.data.shapes.cache"):
        assert ensure_shapes(root, SMALL, progress=False) == d
    assert "Regenerating" in caplog.text and "train_000001.png" in caplog.text
    assert verify_shapes(d, SMALL) == []
    assert _hashes(json.loads(open(os.path.join(d, "manifest.json")).read())) == _hashes(manifest)
    assert sorted(os.listdir(root)) == ["shapes", "shapes.lock"]  # no temp folders left

    # other parameters -> regenerated for them
    other = ShapesConfig(num_train=1, num_val=1, seed=0)
    assert any("generated with" in p for p in verify_shapes(d, other))
    ensure_shapes(root, other, progress=False)
    assert verify_shapes(d, other) == [] and not os.path.exists(os.path.join(d, "images", "train_000001.png"))


def test_incomplete_dataset_without_marker_is_regenerated(tmp_path):
    d = ensure_shapes(str(tmp_path), SMALL, progress=False)
    os.remove(os.path.join(d, "COMPLETE"))
    assert "incomplete" in verify_shapes(d, SMALL)[0]
    ensure_shapes(str(tmp_path), SMALL, progress=False)
    assert verify_shapes(d, SMALL) == []


def test_concurrent_ensure_generates_once(tmp_path, monkeypatch):
    calls = []
    real = shapes_cache.generate_shapes

    def counting(*args, **kwargs):
        calls.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(shapes_cache, "generate_shapes", counting)
    results, errors = [], []

    def worker():
        try:
            results.append(ensure_shapes(str(tmp_path), SMALL, progress=False))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(calls) == 1 and len(set(results)) == 1
    assert verify_shapes(results[0], SMALL) == []


def test_sizes_from_environment(monkeypatch):
    monkeypatch.setenv("SHAPES_NUM_TRAIN", "7")
    monkeypatch.setenv("SHAPES_NUM_VAL", "2")
    monkeypatch.delenv("SHAPES_SEED", raising=False)
    assert config_from_env() == ShapesConfig(num_train=7, num_val=2, seed=0)
    assert config_from_env(num_train=3) == ShapesConfig(num_train=3, num_val=2, seed=0)
    monkeypatch.setenv("SHAPES_NUM_VAL", "many")
    with pytest.raises(ValueError, match="SHAPES_NUM_VAL"):
        config_from_env()


_COUNTER = None


def _counting_generate(*args, **kwargs):
    with _COUNTER.get_lock():
        _COUNTER.value += 1
    return _REAL_GENERATE(*args, **kwargs)


_REAL_GENERATE = shapes_cache.generate_shapes


def _ensure_in_child(root):
    return ensure_shapes(root, SMALL, progress=False)


def test_two_processes_generate_once(tmp_path, monkeypatch):
    import multiprocessing as mp

    global _COUNTER
    ctx = mp.get_context("fork")  # children inherit the patched generator and loaded modules
    _COUNTER = ctx.Value("i", 0)
    monkeypatch.setattr(shapes_cache, "generate_shapes", _counting_generate)
    with ctx.Pool(2) as pool:
        paths = pool.map(_ensure_in_child, [str(tmp_path)] * 2)
    assert len(set(paths)) == 1 and _COUNTER.value == 1
    assert verify_shapes(paths[0], SMALL) == []
    assert sorted(os.listdir(tmp_path)) == ["shapes", "shapes.lock"]
