"""Regenerating the shapes dataset (one file edited, or other parameters) replaces only the
files the generator owns (its manifest); files and folders a user put there stay."""
import json

from segmentation_core.data.shapes import ShapesConfig, ensure_shapes, verify_shapes

SMALL = ShapesConfig(num_train=3, num_val=1, seed=0)


def test_regeneration_touches_only_manifest_owned_files(tmp_path):
    root = str(tmp_path)
    shapes = tmp_path / "shapes"
    ensure_shapes(root, SMALL, progress=False)
    (shapes / "my_notes.txt").write_text("mine")
    (shapes / "extra").mkdir()
    (shapes / "extra" / "a.txt").write_text("mine too")
    (shapes / "images" / "my_image.png").write_bytes(b"not generated")
    edited = shapes / "images" / "train_000001.png"
    edited.write_bytes(b"edited")

    ensure_shapes(root, SMALL, progress=False)  # regenerates: the edited file is wrong
    assert verify_shapes(str(shapes), SMALL) == []
    assert edited.read_bytes()[:4] == b"\x89PNG"
    assert (shapes / "my_notes.txt").read_text() == "mine"
    assert (shapes / "extra" / "a.txt").read_text() == "mine too"
    assert (shapes / "images" / "my_image.png").read_bytes() == b"not generated"

    # fewer images: the previous generation's extra files go, the user's stay
    fewer = ShapesConfig(num_train=2, num_val=1, seed=0)
    ensure_shapes(root, fewer, progress=False)
    assert verify_shapes(str(shapes), fewer) == []
    assert not (shapes / "images" / "train_000002.png").exists()
    assert (shapes / "my_notes.txt").exists() and (shapes / "images" / "my_image.png").exists()
    assert "images/train_000002.png" not in json.loads((shapes / "manifest.json").read_text())["files"]
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
