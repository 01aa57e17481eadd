"""A tiny shapes dataset generated once per test session into a temporary folder."""
import pytest

from d2_common.data.shapes import ShapesConfig, ensure_shapes, register_shapes

TINY = ShapesConfig(num_train=8, num_val=3, seed=0)
TEST_PREFIX = "testshapes"


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    register_shapes(str(root), TINY, prefix=TEST_PREFIX)
    ensure_shapes(str(root), TINY, progress=False)
    return root


@pytest.fixture(scope="session")
def shapes_dir(shapes_root):
    return shapes_root / "shapes"
