"""The core imports no plugin: nothing under ``segmentation_core/`` names ``maskformer_d2`` or
``restr_d2`` in an import, whether a plain ``import``, ``importlib.import_module("...")``,
``__import__`` or a ``"package.module:Class"`` string handed to a lazy loader."""
import ast
import re

import pytest
from tests.helpers.paths import REPO as REPOSITORY

REPO = REPOSITORY
CORE = REPO / "segmentation_core"
PLUGINS = ("maskformer_d2", "restr_d2")
# a string that names a plugin module the way lazy loaders take it: "restr_d2.data:Mapper",
# "maskformer_d2.modeling", "restr_d2" alone
_PLUGIN_STRING = re.compile(r"^\s*(%s)(\.[A-Za-z_][\w.]*)?(:[A-Za-z_]\w*)?\s*$" % "|".join(PLUGINS))


def _is_plugin_module(dotted: str) -> bool:
    """``dotted`` names a module of a plugin of this tree (the entry-point group
    "restr_d2.plugins" is a name, not a module)."""
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def plugin_imports(source: str, filename: str = "<string>"):
    """(line, what) of every import of a plugin in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if a.name.split(".")[0] in PLUGINS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in PLUGINS:
            found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _PLUGIN_STRING.match(node.value) \
                and _is_plugin_module(node.value.strip().split(":")[0]):
            found.append((node.lineno, f"string {node.value!r} (importlib / __import__ / 'pkg:Class')"))
    return found


def test_the_checker_sees_every_kind_of_import():
    source = "\n".join([
        "import restr_d2",
        "import maskformer_d2.modeling as m",
        "from restr_d2.evaluation import ReferringEvaluator",
        "import importlib; importlib.import_module('maskformer_d2.evaluation')",
        "__import__('restr_d2')",
        "register('referring', 'restr_d2.data.dataset_mappers:ReferringDatasetMapper')",
        # not imports: prose naming a plugin, a relative import, a look-alike package
        "msg = 'datasets are registered by importing maskformer_d2 / restr_d2'",
        "from .restr_d2 import x",
        "import restr_d2_extra",
        "GROUP = 'restr_d2.plugins'",
    ])
    assert [line for line, _ in plugin_imports(source)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_core_module_imports_no_plugin(path):
    assert plugin_imports(path.read_text(), str(path)) == [], (
        f"{path.relative_to(REPO)} imports a plugin: the core picks plugin code by name from its "
        "registries (META_ARCH_REGISTRY, CONFIG_FAMILY_REGISTRY, DATASET_MAPPER_REGISTRY, "
        "EVALUATOR_REGISTRY), which the plugins fill when segmentation_core.config.load_plugins() imports them")


def test_plugins_do_not_import_each_other():
    for plugin in PLUGINS:
        other = [p for p in PLUGINS if p != plugin]
        for path in sorted((REPO / plugin).rglob("*.py")):
            bad = [(line, what) for line, what in plugin_imports(path.read_text(), str(path))
                   if any(o in what for o in other)]
            assert bad == [], f"{path.relative_to(REPO)} imports the other plugin: {bad}"
