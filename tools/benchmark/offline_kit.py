"""Wheels that let the benchmarks run on a machine without network (an accelerator host).

The bf16 target of docs/benchmarks.md needs a CPU with ``avx512_bf16`` or ``amx_bf16``; the
machines we develop on lack both, the accelerator hosts this project is sometimes lent may have
them. Those hosts have Python 3.12 and PyTorch, transformers, NumPy, OpenCV... in their image,
cannot reach the package index, and start bare each time. This tool collects here what they
lack, as wheels for their Python, into one folder that travels with the working tree:

* detectron2, our patched pure-Python build (``tools/install/install_detectron2.py --wheel-dir``);
* detectron2's pure-Python dependencies and pycocotools (binary, for the target Python);
* transformers at the version we test with, so the peer model is the one
  docs/benchmarks.md measured (the image's own transformers is older).

Versions come from ``requirements/constraints.txt``, so the kit is what CI tests.
``tools/benchmark/bf16_check.sh`` is the command to run there; it installs the kit into a
scratch folder (nothing of the image is replaced) and writes its reports under ``$OUT``::

    python tools/benchmark/offline_kit.py --dest .whl            # here (needs the index)
    bash tools/benchmark/bf16_check.sh                           # there (.whl carried along)
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = REPO_ROOT / "requirements" / "constraints.txt"

# What the accelerator image lacks for `benchmark.py --preset m2f_swin_t_panoptic` (found by
# installing the kit into a Python 3.12 environment holding the image's packages; see
# docs/benchmarks.md "Measuring it on another machine"). Pure-Python ones are built or fetched here as
# `py3-none-any` wheels (fvcore, iopath and antlr4 publish only source releases); binary ones are
# fetched for the other machine's Python and platform.
KIT_PURE = ("fvcore", "iopath", "yacs", "omegaconf", "hydra-core", "antlr4-python3-runtime",
            "termcolor", "transformers")
KIT_BINARY = ("pycocotools",)
# what this tool put in --dest (a later run removes exactly these)
MANIFEST = "offline_kit.txt"
# manylinux tags pip must be told one by one when it downloads for another interpreter.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")

__all__ = ["KIT_PURE", "KIT_BINARY", "pinned_versions", "pinned", "download_command", "not_pure",
           "pure_wheel_command", "clear_previous_kit", "main"]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(text: str) -> Dict[str, str]:
    """``name==version`` lines of a requirements file -> {normalised name: version}."""
    pins = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s#;]+)", line)
        if m:
            pins[_normalise(m.group(1))] = m.group(2)
    return pins


def pinned(packages: Iterable[str], pins: Dict[str, str]) -> List[str]:
    """``name==version`` for each package, the version pinned in constraints.txt."""
    missing = [p for p in packages if _normalise(p) not in pins]
    if missing:
        raise ValueError(f"{', '.join(missing)} not pinned in {CONSTRAINTS.name}: the kit installs "
                         "exactly what CI tests; pin them there")
    return [f"{p}=={pins[_normalise(p)]}" for p in packages]


def download_command(packages: Iterable[str], pins: Dict[str, str], dest: Path,
                     python_version: str = "3.12", python: str = sys.executable) -> List[str]:
    """The ``pip download`` that fetches binary ``packages`` at their pinned versions as wheels
    for CPython ``python_version`` on x86-64 Linux (no dependencies: the kit lists them)."""
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    return cmd + pinned(packages, pins)


def pure_wheel_command(packages: Iterable[str], pins: Dict[str, str], dest: Path,
                       python: str = sys.executable) -> List[str]:
    """The ``pip wheel`` that fetches or builds pure-Python ``packages`` at their pinned versions."""
    return [python, "-m", "pip", "wheel", "--no-deps", "-w", str(dest)] + pinned(packages, pins)


def not_pure(wheels: Iterable[Path]) -> List[str]:
    """Names of wheels built for one interpreter or platform (they would not install there)."""
    return [w.name for w in wheels if not re.search(r"-py[23.]*(py3)?-none-any\.whl$", w.name)]


def clear_previous_kit(dest: Path) -> List[str]:
    """Remove the wheels an earlier run of this tool left in ``dest`` (listed in its manifest);
    refuse a folder holding wheels it did not put there (bf16_check.sh installs every wheel in
    the folder, and two versions of one package stop the whole install). Returns what it removed."""
    manifest = dest / MANIFEST
    ours = set(manifest.read_text().split()) if manifest.exists() else set()
    present = sorted(w.name for w in dest.glob("*.whl"))
    foreign = [w for w in present if w not in ours]
    if foreign:
        raise FileExistsError(f"{dest} holds wheels this tool did not put there ({', '.join(foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}): give an empty folder to --dest, "
                              "or remove them")
    for name in present:
        (dest / name).unlink()
    manifest.unlink(missing_ok=True)
    return present


def _run(step: str, cmd: List[str]) -> None:
    if subprocess.call(cmd) != 0:
        sys.exit(f"[offline_kit] ERROR: {step} failed (pip's message above). This tool needs the "
                 "package index (run it where `pip download` works) and the detectron2 source release "
                 "that `make install` caches in .cache/.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dest", default=str(REPO_ROOT / ".whl"),
                   help="folder for the wheels (default: .whl, which git ignores)")
    p.add_argument("--python-version", default="3.12", help="the other machine's Python (X.Y)")
    args = p.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        p.error(f"--python-version {args.python_version!r}: give the other machine's Python as 3.X, e.g. 3.12")
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        removed = clear_previous_kit(dest)
    except FileExistsError as e:
        sys.exit(f"[offline_kit] ERROR: {e}")
    if removed:
        print(f"[offline_kit] removed the {len(removed)} wheels of the previous kit in {dest}")
    _run("building the detectron2 wheel",
         [sys.executable, str(REPO_ROOT / "tools" / "install" / "install_detectron2.py"), "--wheel-dir", str(dest)])
    pins = pinned_versions(CONSTRAINTS.read_text())
    _run("fetching or building the pure-Python wheels", pure_wheel_command(KIT_PURE, pins, dest))
    wrong = not_pure(dest.glob("*.whl"))
    if wrong:
        sys.exit(f"[offline_kit] ERROR: {', '.join(wrong)} are not pure-Python wheels; "
                 "move them to KIT_BINARY so they are fetched for the other machine's Python")
    _run(f"fetching the binary wheels for Python {args.python_version}",
         download_command(KIT_BINARY, pins, dest, args.python_version))
    wheels = sorted(dest.glob("*.whl"))
    (dest / MANIFEST).write_text("".join(f"{w.name}\n" for w in wheels))
    size = sum(w.stat().st_size for w in wheels)
    print(f"[offline_kit] {len(wheels)} wheels, {size / 2**20:.1f} MiB in {dest} (for Python {args.python_version}):")
    for w in wheels:
        print(f"  {w.name}")
    print("[offline_kit] there: bash tools/benchmark/bf16_check.sh (with this folder carried along)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
