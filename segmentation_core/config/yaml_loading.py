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
import copy
import os
from typing import Any, Callable, Dict, Iterable, Optional

import yaml
from detectron2.utils.file_io import PathManager

__all__ = [
    "ConfigYAMLError",
    "UnsafeYAMLError",
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


_YAML_TAG_PREFIX = "tag:yaml.org,2002:"


class UnsafeYAMLError(ConfigYAMLError):
    """A YAML file holds a tag that would construct a Python object (or any tag the safe loader
    does not know), or an ``eval`` expression the restricted evaluator refuses."""

    def __init__(self, path: str, line: int, column: int, tag: str, reason: str = ""):
        self.path, self.line, self.column, self.tag, self.reason = path, line, column, tag, reason
        shown = "!!" + tag[len(_YAML_TAG_PREFIX):] if tag.startswith(_YAML_TAG_PREFIX) else tag
        if reason:
            text = f"{reason}. Config files cannot run code; write the evaluated value instead"
        else:
            kind = "a Python tag" if shown.startswith("!!python/") else "an unknown tag"
            text = (f"{kind} {shown} is refused. Python tags make the YAML loader build Python objects "
                    "or call functions (a downloaded config could run commands), so configs are read "
                    "with a safe loader (only the official '!!python/object/apply:eval' size "
                    "expressions are evaluated, by a restricted evaluator): write the value as a plain "
                    "number, string, list or mapping instead")
        super().__init__(f"{path}, line {line}, column {column}: {text}")

    def __reduce__(self):  # picklable across processes (detectron2 launch)
        return type(self), (self.path, self.line, self.column, self.tag, self.reason)


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
    mark = node.start_mark
    args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else None
    if not args or len(args) != 1 or not isinstance(args[0], str):
        raise UnsafeYAMLError(loader.source, mark.line + 1, mark.column + 1, node.tag,
                              "!!python/object/apply:eval takes one string expression")
    try:
        return evaluate_size_expression(args[0])
    except ValueError as e:
        raise UnsafeYAMLError(loader.source, mark.line + 1, mark.column + 1, node.tag,
                              f"the expression {args[0]!r} of !!python/object/apply:eval is refused: {e}") from None


def _refuse_tag(loader: _SafeConfigLoader, node):
    mark = node.start_mark
    raise UnsafeYAMLError(loader.source, mark.line + 1, mark.column + 1, node.tag)


_SafeConfigLoader.add_constructor(_EVAL_TAG, _construct_eval)
_SafeConfigLoader.add_constructor(None, _refuse_tag)  # every tag a safe loader does not know


# parsed files by (real path, modification time, size): a config is read several times while it
# is built (family detection, key checks, merge); the pure-Python YAML parser is the slow part
_PARSED: Dict[tuple, Any] = {}


def _read_yaml(path: str) -> Any:
    if "://" in path:
        return _parse_yaml(path)
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
    if key not in _PARSED:
        if len(_PARSED) > 1024:
            _PARSED.clear()
        _PARSED[key] = _parse_yaml(path)
    return copy.deepcopy(_PARSED[key])


def _parse_yaml(path: str) -> Any:
    with PathManager.open(path, "r") as f:
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
    """The merged mapping of ``path`` and its ``_BASE_`` chain, read safely (fvcore's semantics:
    ``_BASE_`` is a file or a list of files, relative to the file naming it, ``~`` expanded; the
    file's keys override its bases'; a loop is an error). The values
    of ``path_keys`` (dotted keys) that a file sets are resolved relative to that file.
    """
    path = os.fspath(path)
    if "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} does not exist")
    real = os.path.realpath(path) if "://" not in path else path
    if real in _seen:
        raise ConfigYAMLError("_BASE_ chain loops: " + " -> ".join(_seen + (real,)))
    loaded = _read_yaml(path)
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigYAMLError(f"{path} must contain a mapping of config keys, got {type(loaded).__name__}")
    for key in path_keys:
        node, leaf = _get_path(loaded, key)
        if node is not None:
            node[leaf] = resolve(node[leaf], path)
    bases = loaded.pop(BASE_KEY, None)
    if bases is None:
        return loaded
    merged: Dict = {}
    for base in bases if isinstance(bases, list) else [bases]:  # fvcore: a list merges in order
        if not isinstance(base, str):
            raise ConfigYAMLError(f"{path}: _BASE_ must be a file name or a list of them, got {base!r}")
        base = os.path.expanduser(base)
        if not os.path.isabs(base) and not base.startswith(("http://", "https://")):
            base = os.path.join(os.path.dirname(path), base)
        if "://" not in base and not os.path.isfile(base):
            raise FileNotFoundError(f"{path}: its _BASE_ file {base} does not exist")
        _merge_a_into_b(load_yaml_with_base(base, path_keys=path_keys, resolve=resolve, _seen=_seen + (real,)),
                        merged, path)
    _merge_a_into_b(loaded, merged, path)
    return merged
