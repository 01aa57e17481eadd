import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Tests run on 2 cores; fixtures were generated with 2 threads.
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def fixtures_dir():
    return FIXTURES
