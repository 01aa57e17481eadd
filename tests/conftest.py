import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Tests run on 2 cores; fixtures were generated with 2 threads. `make test` runs two pytest-xdist
# workers, one thread each (two threads each would oversubscribe the 2 cores).
import torch  # noqa: E402

torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

# The installed ``demo`` package (``demo.predictor``, which tools/demo imports), bound before a
# test loads ``demo/demo.py`` the way Python runs it, with demo/ first on sys.path, where the name
# ``demo`` would be the script.
import demo.predictor  # noqa: E402,F401


# Tests that share an expensive session/module fixture run in one pytest-xdist worker
# (`--dist loadgroup`), so it is built once, not once per worker.
XDIST_GROUPS = {
    "tests/export/": "onnx_exports",  # each family exported to ONNX once (tests/export/conftest.py)
    "tests/train_net/test_dinov2_shapes_training.py": "dinov2_training",  # one conversion + 5 trainings
    "tests/demo/": "web_demo",  # one running web demo server
}


# tryfirst: pytest-xdist's own hook reads the xdist_group marks (it appends "@group" to each node
# id), so they must be on the items before it runs; added after it, they group nothing.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        group = xdist_group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def xdist_group_of(item):
    """The XDIST_GROUPS group of a collected test (by its file's path), or None."""
    path = Path(str(item.fspath)).resolve().relative_to(REPO_ROOT).as_posix()
    return next((group for prefix, group in XDIST_GROUPS.items() if path.startswith(prefix)), None)


@pytest.fixture
def fixtures_dir():
    return FIXTURES


# -- a tiny shapes dataset generated once per session (datasets, mappers, validation tests) ---------
from segmentation_core.data.shapes import ShapesConfig, ensure_shapes, register_shapes  # noqa: E402

TINY_SHAPES = ShapesConfig(num_train=8, num_val=3, seed=0)
TINY_SHAPES_PREFIX = "testshapes"


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    register_shapes(str(root), TINY_SHAPES, prefix=TINY_SHAPES_PREFIX)
    ensure_shapes(str(root), TINY_SHAPES, progress=False)
    return root


@pytest.fixture(scope="session")
def shapes_dir(shapes_root):
    return shapes_root / "shapes"
