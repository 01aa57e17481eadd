"""``ReferringPredictor`` names what it was given: a sentence argument that is not a str or a
list of str is a ``TypeError`` (not "'NoneType' object is not iterable"); an image of None
(what cv2.imread returns for an unreadable file) points to the checked reader."""
import os

import numpy as np
import pytest

from segmentation_core.config import build_cfg
from restr_d2.engine.predictor import ReferringPredictor
from tests.helpers.paths import REPO as REPOSITORY

REPO = str(REPOSITORY)


@pytest.fixture(scope="module")
def predictor():
    cwd = os.getcwd()
    os.chdir(REPO)  # the shapes ReSTR config names its vocabulary relative to the repo
    try:
        return ReferringPredictor(build_cfg(os.path.join(REPO, "configs/shapes/restr_shapes.yaml"), []))
    finally:
        os.chdir(cwd)


IMAGE = np.zeros((32, 40, 3), np.uint8)


@pytest.mark.parametrize("sentences, named", [
    (None, "NoneType"), (3, "int"), (b"the red circle", "bytes"),
    (["the red circle", None], "a list holding NoneType"), (("a", 1.5), "a tuple holding float"),
])
def test_non_str_sentences_are_a_type_error_naming_what_was_given(predictor, sentences, named):
    with pytest.raises(TypeError, match=f"sentences must be a str or a list of str, got {named}"):
        predictor(IMAGE, sentences)


def test_str_and_list_still_work(predictor):
    assert predictor(IMAGE, "the red circle")["mask"].shape == (32, 40)
    assert len(predictor(IMAGE, ("the red circle", "the blue star"))) == 2


def test_image_none_points_to_the_checked_reader(predictor):
    with pytest.raises(ValueError, match="cv2.imread returns None.*read_image_checked"):
        predictor(None, "the red circle")
