"""`make test` runs two pytest-xdist workers with `--dist loadgroup`: the tests of one group
(tests/conftest.py XDIST_GROUPS) share an expensive fixture and must reach one worker. xdist
groups them by appending "@<group>" to the node id it sends its scheduler; a pytest/xdist pair
where that rewrite has no effect (pytest 9.2 with xdist 3.8) splits every group silently, and
the suite does each ONNX export and each DINOv2 training twice."""
import os

import pytest

from tests.conftest import xdist_group_of


def _under_loadgroup(config) -> bool:
    return bool(os.environ.get("PYTEST_XDIST_WORKER")) and bool(config.getvalue("loadgroup"))


def test_grouped_items_carry_their_group_in_the_node_id(request):
    if not _under_loadgroup(request.config):
        pytest.skip("only meaningful in a pytest-xdist worker run with --dist loadgroup (make test)")
    grouped = {item.nodeid: xdist_group_of(item) for item in request.session.items}
    grouped = {nodeid: group for nodeid, group in grouped.items() if group is not None}
    if not grouped:
        pytest.skip("no grouped test was collected in this run")
    wrong = [nodeid for nodeid, group in grouped.items() if not nodeid.endswith(f"@{group}")]
    assert not wrong, f"{len(wrong)} grouped tests lost their group, e.g. {wrong[0]}"
