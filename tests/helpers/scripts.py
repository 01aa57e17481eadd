"""Load a script of the repository (``demo/demo.py``, ``datasets/prepare_*.py``) as a module.

``python demo/demo.py`` puts the script's own folder first on ``sys.path`` (that is how
``demo.py`` finds ``predictor.py``, as in detectron2's demo); loading the file here does the same,
so the tests run the scripts exactly as a user's command line does.
"""
import importlib.util
import sys

from .paths import REPO


def load_script(relative_path: str, module_name: str):
    path = REPO / relative_path
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(module_name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
