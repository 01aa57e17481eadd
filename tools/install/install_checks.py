#!/usr/bin/env python
"""Environment checks run by tools/install/install.sh before it installs anything.

`python tools/install/install_checks.py python` checks the interpreter running it;
`python tools/install/install_checks.py torch` checks the torch importable by it (if any);
`python tools/install/install_checks.py disk DIR` checks that DIR (the environment) has room for
what the installer is about to add.
Each prints a clear error and exits 1 when the environment cannot work.
"""
import importlib.util
import os
import shutil
import sys

SUPPORTED_PYTHON = ((3, 10), (3, 13))  # torch 2.14.1 wheels; tested on 3.11
MIN_TORCH = (2, 1)


def check_python(version):
    lo, hi = SUPPORTED_PYTHON
    if not (lo <= tuple(version[:2]) <= hi):
        return (f"Python {version[0]}.{version[1]} is not supported: restr-d2 needs Python "
                f"{lo[0]}.{lo[1]}-{hi[0]}.{hi[1]} (tested on 3.11). "
                "Set PYTHON=/path/to/python3.11 and run `make install` again.")
    return None


def check_torch(version_string):
    try:
        major, minor = (int(x) for x in version_string.split("+")[0].split(".")[:2])
    except ValueError:
        return f"cannot parse the installed torch version {version_string!r}"
    if (major, minor) < MIN_TORCH:
        return (f"torch {version_string} is too old: restr-d2 needs torch >= "
                f"{MIN_TORCH[0]}.{MIN_TORCH[1]} (tested with 2.14.1). Upgrade it, or install "
                "into a fresh environment (VENV=.venv-new make install).")
    return None


# What `make install` adds to a fresh environment, measured (du -sh .venv after a fresh install,
# x86_64): torch 2.14.1 with its CUDA libraries and triton 5.3 GB, the rest 1.7 GB. With torch
# already there the rest is what is left to add.
FRESH_ENV_GB = 7.0
WITHOUT_TORCH_GB = 1.7


def check_disk(path, free_bytes, torch_installed):
    need = WITHOUT_TORCH_GB if torch_installed else FRESH_ENV_GB
    free = free_bytes / 2**30
    if free < need:
        return (f"{path} has {free:.1f} GiB free; the install adds about {need:.1f} GiB there "
                f"({'the project and the field libraries' if torch_installed else 'torch 2.14.1 with its CUDA libraries, detectron2 and the field libraries'}). "
                "Free some space, or install elsewhere: VENV=/path/with/room make install.")
    return None


def _existing_parent(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def main(what, *args):
    if what == "python":
        error = check_python(sys.version_info)
    elif what == "torch":
        try:
            import torch
        except ImportError:
            return 0  # the installer installs the pinned torch
        error = check_torch(torch.__version__)
    elif what == "disk" and len(args) == 1:
        where = _existing_parent(args[0])
        # find_spec: whether torch is there, without the seconds importing it takes
        error = check_disk(where, shutil.disk_usage(where).free, importlib.util.find_spec("torch") is not None)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} python | torch | disk DIR")
    if error:
        print(f"[install] ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*(sys.argv[1:] or [""])))
