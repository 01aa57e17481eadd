"""Reading config YAML files (with their ``_BASE_`` chains) without running code.

detectron2 falls back to ``yaml.unsafe_load`` when a file has a Python tag, so a config file can
run anything. Here every file is read with a safe loader. The one Python tag the official
MaskFormer / Mask2Former files use is accepted, because their files must load unchanged::

    MIN_SIZE_TRAIN: !!python/object/apply:eval ["[int(x * 0.1 * 640) for x in range(5, 21)]"]

Its expression is evaluated by :func:`evaluate_size_expression`, which accepts only number
literals, arithmetic, ``int``/``float``/``round``/``range`` and list comprehensions over them
(what those files need); every other tag or expression is a :class:`ConfigYAMLError` naming the
file, the line and the tag.

Relative file paths in a YAML (the keys listed by the config families, e.g. a vocabulary file)
resolve against the YAML file that sets them, not the current directory: see
:func:`resolve_relative_path`.
"""
import ast
import os
from typing import Any, Callable, Dict, Iterable, Optional

import yaml

__all__ = [
    "ConfigYAMLError",
    "evaluate_size_expression",
    "load_yaml_with_base",
    "resolve_relative_path",
]

BASE_KEY = "_BASE_"
_EVAL_TAG = "tag:yaml.org,2002:python/object/apply:eval"
_ALLOWED_CALLS = {"int": int, "float": float, "round": round, "range": range}
_MAX_RANGE = 10_000  # a size list, not a way to allocate memory


class ConfigYAMLError(ValueError):
    """A config file that is not valid YAML, or holds a tag / expression that is refused."""


def evaluate_size_expression(expression: str) -> Any:
    """Value of an official-config expression such as ``[int(x * 0.1 * 640) for x in range(5, 21)]``.

    Only number literals, ``+ - * / // %``, unary minus, lists/tuples, list comprehensions and
    calls of ``int``, ``float``, ``round`` and ``range`` (with literal arguments, at most
    10,000 values) are accepted. Raises ``ValueError`` naming what is refused.
    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"not a Python expression: {e.msg}") from None
    bound = set()
    if sum(isinstance(n, ast.comprehension) for n in ast.walk(tree)) > 1:
        raise ValueError("at most one comprehension is allowed")
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            if not isinstance(node.target, ast.Name) or node.ifs or node.is_async:
                raise ValueError("only plain 'for NAME in ...' comprehensions are allowed")
            bound.add(node.target.id)
    allowed_nodes = (ast.Expression, ast.ListComp, ast.comprehension, ast.Call, ast.Name, ast.Constant,
                     ast.BinOp, ast.UnaryOp, ast.List, ast.Tuple, ast.Load, ast.Store, ast.Add, ast.Sub,
                     ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.USub, ast.UAdd)
    for node in ast.walk(tree):
        if not isinstance(node, allowed_nodes):
            raise ValueError(f"'{type(node).__name__}' is not allowed (only arithmetic on numbers, "
                             "int/float/round/range and list comprehensions)")
        if isinstance(node, ast.BinOp) and any(isinstance(side, (ast.List, ast.Tuple, ast.ListComp))
                                               for side in (node.left, node.right)):
            raise ValueError("arithmetic on lists is not allowed")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise ValueError(f"the constant {node.value!r} is not a number")
        if isinstance(node, ast.Name) and node.id not in _ALLOWED_CALLS and node.id not in bound:
            raise ValueError(f"the name '{node.id}' is not allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _ALLOWED_CALLS or node.keywords:
                raise ValueError("only int(), float(), round() and range() may be called")
            if node.func.id == "range":
                if not all(isinstance(a, ast.Constant) or (isinstance(a, ast.UnaryOp) and
                           isinstance(a.operand, ast.Constant)) for a in node.args):
                    raise ValueError("range() takes number literals only")
                values = [ast.literal_eval(a) for a in node.args]
                if not all(isinstance(v, int) for v in values) or len(range(*values)) > _MAX_RANGE:
                    raise ValueError(f"range{tuple(values)} must have int arguments and at most "
                                     f"{_MAX_RANGE} values")
    code = compile(tree, "<config expression>", "eval")
    return eval(code, {"__builtins__": {}, **_ALLOWED_CALLS})  # checked above: no other names, no attributes


class _SafeConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that knows the file it reads and the official ``eval`` tag."""

    source = "<config>"


def _construct_eval(loader: _SafeConfigLoader, node):
    args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else None
    where = f"{loader.source}, line {node.start_mark.line + 1}"
    if not args or len(args) != 1 or not isinstance(args[0], str):
        raise ConfigYAMLError(f"{where}: !!python/object/apply:eval takes one string expression")
    try:
        return evaluate_size_expression(args[0])
    except ValueError as e:
        raise ConfigYAMLError(
            f"{where}: the expression {args[0]!r} of !!python/object/apply:eval is refused: {e}. "
            "Config files cannot run code; write the evaluated value instead.") from None


def _refuse_python_tag(loader: _SafeConfigLoader, tag_suffix: str, node):
    raise ConfigYAMLError(
        f"{loader.source}, line {node.start_mark.line + 1}: the YAML tag '!!python/{tag_suffix}' "
        "is refused: a config file cannot create Python objects or run code (only the official "
        "'!!python/object/apply:eval' size expressions are evaluated, by a restricted evaluator). "
        "Replace the tagged value with a plain value.")


_SafeConfigLoader.add_constructor(_EVAL_TAG, _construct_eval)
_SafeConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", _refuse_python_tag)


def _read_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    loader = _SafeConfigLoader(text)
    loader.source = path
    try:
        return loader.get_single_data()
    except ConfigYAMLError:
        raise
    except yaml.constructor.ConstructorError as e:
        mark = e.problem_mark
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigYAMLError(f"{path}{line}: {e.problem} - only plain YAML values are allowed in a "
                              "config file") from None
    except yaml.YAMLError as e:
        raise ConfigYAMLError(f"{path} is not valid YAML: {e}") from None
    finally:
        loader.dispose()


def resolve_relative_path(value: str, yaml_path: str, *, repo_root: Optional[str] = None) -> str:
    """Where a relative file path written in ``yaml_path`` points.

    Tried in order, the first that exists wins: next to the YAML file, then in each folder above
    it (so ``configs/restr/vocab.txt`` written in ``configs/shapes/x.yaml`` finds the repository's
    file), then, for a path starting with ``datasets/``, under ``$DETECTRON2_DATASETS``. A path
    found nowhere is returned as written (relative to the current directory, as detectron2
    would), and the code that opens it names the config key.
    """
    if not value or os.path.isabs(value) or ":" in value.split("/")[0]:
        return value  # empty, absolute, or a scheme such as "pypkg:" / "detectron2://"
    folder = os.path.dirname(os.path.abspath(yaml_path))
    while True:
        candidate = os.path.join(folder, value)
        if os.path.exists(candidate):
            return os.path.normpath(candidate)
        parent = os.path.dirname(folder)
        if parent == folder or (repo_root and os.path.samefile(folder, repo_root)):
            break
        folder = parent
    parts = value.replace("\\", "/").split("/")
    if parts[0] == "datasets" and len(parts) > 1:
        candidate = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), *parts[1:])
        if os.path.exists(candidate):
            return os.path.abspath(candidate)
    return value


def _get_path(tree: Dict, key: str):
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None, None
    if isinstance(node, dict) and isinstance(node.get(parts[-1]), str):
        return node, parts[-1]
    return None, None


def _merge_a_into_b(a: Dict, b: Dict, source: str) -> None:
    for k, v in a.items():
        if isinstance(v, dict) and k in b:
            if not isinstance(b[k], dict):
                raise ConfigYAMLError(f"{source}: key {k} is a group here but a value in its _BASE_")
            _merge_a_into_b(v, b[k], source)
        else:
            b[k] = v


def load_yaml_with_base(path: str, *, path_keys: Iterable[str] = (),
                        resolve: Callable[[str, str], str] = resolve_relative_path,
                        _seen: tuple = ()) -> Dict:
    """The merged mapping of ``path`` and its ``_BASE_`` chain, read safely.

    ``_BASE_`` is relative to the file naming it (``~`` expanded), as in detectron2. The values
    of ``path_keys`` (dotted keys) that a file sets are resolved relative to that file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    real = os.path.realpath(path)
    if real in _seen:
        raise ConfigYAMLError(f"{path}: _BASE_ cycle ({' -> '.join(_seen + (real,))})")
    loaded = _read_yaml(path)
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigYAMLError(f"{path} must contain a mapping of config keys, got {type(loaded).__name__}")
    for key in path_keys:
        node, leaf = _get_path(loaded, key)
        if node is not None:
            node[leaf] = resolve(node[leaf], path)
    base = loaded.pop(BASE_KEY, None)
    if base is None:
        return loaded
    if not isinstance(base, str):
        raise ConfigYAMLError(f"{path}: _BASE_ must be a file name, got {base!r}")
    base = os.path.expanduser(base)
    if not os.path.isabs(base) and not base.startswith(("http://", "https://")):
        base = os.path.join(os.path.dirname(path), base)
    if not os.path.isfile(base):
        raise FileNotFoundError(f"{path}: its _BASE_ file {base} does not exist")
    merged = load_yaml_with_base(base, path_keys=path_keys, resolve=resolve, _seen=_seen + (real,))
    _merge_a_into_b(loaded, merged, path)
    return merged
