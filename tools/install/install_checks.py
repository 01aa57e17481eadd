#!/usr/bin/env python
"""Environment checks run by tools/install/install.sh before it installs anything.

`python tools/install/install_checks.py python` checks the interpreter running it;
`python tools/install/install_checks.py torch` checks the torch importable by it (if any).
Each prints a clear error and exits 1 when the environment cannot work.
"""
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


def main(what):
    if what == "python":
        error = check_python(sys.version_info)
    elif what == "torch":
        try:
            import torch
        except ImportError:
            return 0  # the installer installs the pinned torch
        error = check_torch(torch.__version__)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} python|torch")
    if error:
        print(f"[install] ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
