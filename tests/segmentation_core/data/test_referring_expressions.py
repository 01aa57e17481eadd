"""Referring expressions of the shapes data single out exactly their target."""
import json
import pickle

import numpy as np
import pytest

from segmentation_core.data.shapes.expressions import (
    SceneObject, candidate_expressions, choose_sentences, parse, referent,
)


def _obj(i, shape, color, size, cx, cy, radius=10.0, stuff=None):
    return SceneObject(i, shape, color, size, cx, cy, radius, stuff or {"sky": 1.0})


def _scenes(shapes_dir):
    out = {}
    for split in ("train", "val"):
        data = json.loads((shapes_dir / "annotations" / f"scenes_{split}.json").read_text())
        for im in data["images"]:
            out[im["image_id"]] = [SceneObject.from_dict(o) for o in im["objects"]]
    return out


def test_every_generated_sentence_denotes_exactly_its_object(shapes_dir):
    refs = pickle.load(open(shapes_dir / "refshapes" / "refs(unc).p", "rb"))
    scenes = _scenes(shapes_dir)
    kinds = set()
    sent_ids = []
    assert refs
    for ref in refs:
        assert 1 <= len(ref["sentences"]) <= 3
        assert ref["sent_ids"] == [s["sent_id"] for s in ref["sentences"]]
        texts = [s["sent"] for s in ref["sentences"]]
        assert len(set(texts)) == len(texts)
        for s in ref["sentences"]:
            assert s["tokens"] == s["sent"].split()
            assert referent(s["sent"], scenes[ref["image_id"]]) == ref["ann_id"], s["sent"]
            kinds.add(parse(s["sent"]).kind)
            sent_ids.append(s["sent_id"])
    assert len(set(sent_ids)) == len(sent_ids)
    assert kinds == {"attribute", "relation", "superlative", "place"}
    # most referred objects get several sentences
    assert np.mean([len(r["sentences"]) for r in refs]) > 2


def test_checker_rejects_ambiguous_or_wrong_sentences():
    objs = [
        _obj(1, "circle", "red", "large", 20, 50),
        _obj(2, "circle", "red", "small", 100, 52),
        _obj(3, "star", "blue", "medium", 60, 50),
        _obj(4, "circle", "green", "small", 55, 90, stuff={"grass": 0.5, "water": 0.5}),
    ]
    assert referent("the red circle", objs) is None  # two of them
    assert referent("the large circle", objs) == 1
    assert referent("the red circle left of the blue star", objs) == 1
    assert referent("the red circle right of the blue star", objs) == 2
    assert referent("the circle left of the star", objs) is None  # circle 4: too close to call
    assert referent("the circle below the star", objs) == 4
    assert referent("the leftmost circle", objs) == 1
    assert referent("the topmost red circle", objs) is None  # y 50 vs 52: too close
    assert referent("the green circle on the grass", objs) is None  # half on grass
    assert referent("the square", objs) is None  # nothing
    assert referent("the circle left of the circle", objs) is None  # landmark not unique
    for bad in ("a red circle", "the red", "the red circle near the star", "the circle left of"):
        with pytest.raises(ValueError):
            parse(bad)


def test_candidates_are_unique_and_choice_is_deterministic():
    objs = [
        _obj(1, "square", "yellow", "medium", 30, 30),
        _obj(2, "square", "yellow", "medium", 120, 30),
        _obj(3, "triangle", "green", "small", 75, 100, stuff={"water": 1.0}),
    ]
    cands = candidate_expressions(objs[0], objs)
    assert not cands["attribute"]  # identical twins: only geometry tells them apart
    texts = [e.text() for k in cands for e in cands[k]]
    assert "the leftmost square" in texts and "the square left of the triangle" in texts
    assert all(referent(t, objs) == 1 for t in texts)
    a = choose_sentences(objs[0], objs, np.random.default_rng(3))
    b = choose_sentences(objs[0], objs, np.random.default_rng(3))
    assert a == b and len(a) == 3 and len(set(a)) == 3
