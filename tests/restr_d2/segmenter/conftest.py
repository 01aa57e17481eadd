import sys
from pathlib import Path

# the helpers module sits next to this file (no __init__.py in tests/)
sys.path.insert(0, str(Path(__file__).resolve().parent))
