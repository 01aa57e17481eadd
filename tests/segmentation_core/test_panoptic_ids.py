"""The one id <-> colour conversion of COCO panoptic PNGs."""
import numpy as np
import pytest

from segmentation_core.data.panoptic_ids import id2rgb, rgb2id


def test_hand_computed_colours_and_round_trip():
    ids = np.array([[0, 1, 255], [256, 65536 + 2 * 256 + 3, 256 ** 3 - 1]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[1, 1].tolist() == [3, 2, 1]  # R = id % 256, G = id // 256 % 256, B = id // 65536
    assert rgb[0, 2].tolist() == [255, 0, 0] and rgb[1, 0].tolist() == [0, 1, 0]
    assert rgb[1, 2].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(rgb2id(rgb), ids)


@pytest.mark.parametrize("bad", [-1, 256 ** 3])
def test_ids_outside_24_bits_are_refused(bad):
    with pytest.raises(ValueError, match="256"):
        id2rgb(np.array([[bad]]))


def test_rgb2id_wants_three_channels():
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        rgb2id(np.zeros((4, 4)))
