"""Pickles read without running code: one restricted unpickler, and ``torch.load`` with
``weights_only=True`` that names the file it refuses.

A pickle can call any importable function while it is read (``__reduce__`` ->
``os.system``). The files this project reads as pickles hold plain data only: detectron2 /
Detectron ``.pkl`` checkpoints (dicts of NumPy arrays), REFER ``refs(*).p`` (lists of dicts of
str / int), ADE20K's ``index_ade20k.pkl`` (dicts of lists and NumPy arrays). So
:class:`RestrictedUnpickler` resolves only the globals such data needs:

* builtin containers and scalars need no global; ``set``, ``frozenset``, ``complex``,
  ``bytes``, ``bytearray`` (also under Python 2's ``__builtin__``);
* NumPy arrays, scalars and dtypes: ``numpy.ndarray``, ``numpy.dtype``,
  ``numpy[._]core.multiarray._reconstruct`` / ``scalar``, ``numpy[._]core.numeric._frombuffer``
  (protocol 5);
* ``collections.OrderedDict``;
* ``_codecs.encode`` restricted to str -> bytes in latin-1 / UTF-8 / ASCII (how Python 3
  writes ``bytes`` at protocol 2).

Python 2 byte strings are decoded with the ``encoding`` argument as ``pickle.load`` does
(``latin1`` for NumPy data, detectron2's choice; REFER uses UTF-8). Anything else is an
:class:`UnsafePickleError` naming the file and the refused global.
"""
import codecs
import collections
import importlib
import io
import os
import pickle
import re
from typing import Any, BinaryIO, Callable, Dict, Optional, Tuple, Union

__all__ = [
    "UnsafePickleError",
    "RestrictedUnpickler",
    "ALLOWED_GLOBALS",
    "safe_pickle_load",
    "safe_pickle_loads",
    "torch_load_weights_only",
]

PathOrFile = Union[str, os.PathLike, BinaryIO]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle refers to a global outside the allow-list (it could run code when read)."""

    def __init__(self, source: str, global_name: str, detail: str = ""):
        self.source, self.global_name, self.detail = source, global_name, detail
        super().__init__(
            f"{source}: refused to unpickle the global {global_name}. Only plain data is read from "
            "pickle files (builtin containers and scalars, NumPy arrays and dtypes, OrderedDict), "
            "because any other global can run code while the file is read. If you trust this file, "
            "load it yourself and save its tensors as .pth (torch.save of a state dict) or "
            ".safetensors." + (f" ({detail})" if detail else "")
        )

    def __reduce__(self):  # picklable across processes (detectron2 launch, DataLoader workers)
        return type(self), (self.source, self.global_name, self.detail)


def _numpy_core(submodule: str):
    """``numpy._core.<submodule>`` (NumPy >= 2; also a shim in 1.26), else ``numpy.core``."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


_TEXT_CODECS = {"latin1", "latin-1", "iso8859-1", "iso-8859-1", "utf-8", "utf8", "ascii"}


def _encode_text(text, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` for what pickle protocol 2 needs: str -> bytes with a text codec."""
    if not isinstance(text, str) or str(encoding).lower() not in _TEXT_CODECS:
        raise pickle.UnpicklingError(
            f"_codecs.encode is allowed only for str with a text codec, got {type(text).__name__} / {encoding!r}"
        )
    return codecs.encode(text, encoding, errors)


def _resolvers() -> Dict[Tuple[str, str], Callable[[], Any]]:
    out: Dict[Tuple[str, str], Callable[[], Any]] = {}
    for builtins_module in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex),
                          ("bytes", bytes), ("bytearray", bytearray)):
            out[(builtins_module, name)] = lambda obj=obj: obj
    out[("collections", "OrderedDict")] = lambda: collections.OrderedDict
    out[("_codecs", "encode")] = lambda: _encode_text
    out[("numpy", "ndarray")] = lambda: importlib.import_module("numpy").ndarray
    out[("numpy", "dtype")] = lambda: importlib.import_module("numpy").dtype
    for core in ("numpy.core", "numpy._core"):
        for name in ("_reconstruct", "scalar"):
            out[(f"{core}.multiarray", name)] = lambda name=name: getattr(_numpy_core("multiarray"), name)
        out[(f"{core}.numeric", "_frombuffer")] = lambda: _numpy_core("numeric")._frombuffer
    return out


# (module, name) -> a function returning the object; nothing is imported until a pickle needs it
ALLOWED_GLOBALS: Dict[Tuple[str, str], Callable[[], Any]] = _resolvers()


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS` (every way a pickle
    names a global, extension codes included, goes through ``find_class``); persistent ids
    are refused by the base class."""

    def __init__(self, file: BinaryIO, *, source: str, encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str):
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise UnsafePickleError(self.source, f"{module}.{name}")
        return resolve()


def _source_name(path_or_file: PathOrFile, source: Optional[str]) -> str:
    if source:
        return source
    if isinstance(path_or_file, (str, os.PathLike)):
        return os.fspath(path_or_file)
    return getattr(path_or_file, "name", None) or "<pickle stream>"


def safe_pickle_load(path_or_file: PathOrFile, *, encoding: str = "latin1", source: Optional[str] = None) -> Any:
    """``pickle.load`` through :class:`RestrictedUnpickler`.

    Args:
        path_or_file: a path, or a binary file object (read from its current position).
        encoding: how Python 2 ``str`` are decoded ("latin1" keeps NumPy buffers intact,
            "bytes" leaves them as bytes, "utf-8" for text pickles such as REFER's).
        source: name used in errors (default: the path or the file's name).

    Raises:
        UnsafePickleError: a global outside the allow-list, naming the file and the global.
    """
    name = _source_name(path_or_file, source)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "rb") as f:
            return RestrictedUnpickler(f, source=name, encoding=encoding).load()
    return RestrictedUnpickler(path_or_file, source=name, encoding=encoding).load()


def safe_pickle_loads(data: bytes, *, encoding: str = "latin1", source: str = "<bytes>") -> Any:
    """:func:`safe_pickle_load` of a bytes object."""
    return safe_pickle_load(io.BytesIO(data), encoding=encoding, source=source)


# torch's weights-only refusal names the global ("unsupported GLOBAL posix.system whose module
# ...", or "Unsupported class x.y" in torch < 2.4) but not the file
_TORCH_REFUSED_GLOBAL = re.compile(r"(?:unsupported GLOBAL|Unsupported class)\s+([\w.]+?)\.?(?:\s|$)", re.I)


def torch_load_weights_only(path_or_file: PathOrFile, *, map_location="cpu", source: Optional[str] = None, **kwargs) -> Any:
    """``torch.load(..., weights_only=True)``: tensors, containers and plain values only.

    A file refused for a global it needs is an :class:`UnsafePickleError` naming the file and the
    global (torch's own message names neither the file nor what to do); other errors (a
    truncated or corrupt file) propagate unchanged.
    """
    import torch

    name = _source_name(path_or_file, source)
    try:
        return torch.load(path_or_file, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        match = _TORCH_REFUSED_GLOBAL.search(str(e))
        if match is None:
            raise
        raise UnsafePickleError(name, match.group(1), "refused by torch.load(weights_only=True)") from None
