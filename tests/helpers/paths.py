"""Where the tests find the repository and the reference fixtures, whatever their depth."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
