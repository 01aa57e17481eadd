#!/usr/bin/env python
"""Install detectron2 v0.6 (pure Python, no compiled ops) into the running interpreter.

detectron2 is not on PyPI. ``pb1-detectron2==0.6`` is a source release whose Python files are
byte-identical to upstream detectron2 v0.6, but it has no C++ sources, so its own build fails.
This script:

1. leaves a working detectron2 alone (already installed, e.g. a user's own CUDA build), unless
   ``--force`` is given;
2. installs a user's local source checkout when ``DETECTRON2_SRC=/path/to/detectron2`` is set
   (``pip install -e``, built by detectron2's own setup.py, compiled ops included);
3. otherwise downloads the ``pb1-detectron2==0.6`` sdist (cached under ``.cache/``), applies the
   compatibility fixes upstream detectron2 made after v0.6, and installs it as ``detectron2``
   together with ``detectron2.projects.{point_rend,deeplab,panoptic_deeplab}``; with
   ``--wheel-dir DIR`` it builds that as a pure-Python wheel in DIR instead of installing it
   (for a machine without network: ``tools/benchmark/offline_kit.py``).

The fixes (each mirrors a later upstream change):

* Pillow >= 10 removed ``Image.LINEAR``: use ``Image.BILINEAR`` (same filter).
* NumPy >= 1.24 removed ``np.int/np.float/np.bool/np.str/np.object``: use the builtins.
* ``data/common.py`` ``MapDataset`` retried a rejected record with ``random.sample`` of a set,
  which Python >= 3.11 refuses: sample from the sorted candidates instead.
* ``engine/defaults.py``: ``DefaultPredictor(None)`` (what ``cv2.imread`` returns for an unreadable
  file) raises a ``TypeError`` saying so and how to get an error naming the file, instead of
  "'NoneType' object is not subscriptable".
* ``engine/launch.py`` assumed CUDA: the worker uses gloo and skips ``cuda.set_device`` when no
  GPU is present, so multi-process training runs on CPU.
* ``detectron2._C`` (the compiled extension) is replaced by a module that imports fine and whose
  ops raise ``CompiledOpUnavailableError`` naming the op and what to do instead, so importing
  detectron2 never fails and only the compiled-only ops (deformable conv, rotated boxes, NMS
  rotated, fast COCOeval) are unavailable.
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "pb1-detectron2==0.6"
REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("RESTR_D2_CACHE", REPO_ROOT / ".cache"))
PATCH_MARKER = "_restr_d2_patches.txt"
PATCH_VERSION = "6"

C_STUB = '''"""Stand-in for detectron2's compiled extension, which this build does not include.

Installed by restr-d2's tools/install/install_detectron2.py. Every pure-Python part of detectron2
works; only the ops implemented in C++/CUDA are unavailable.
"""


class CompiledOpUnavailableError(RuntimeError):
    pass


def get_compiler_version():
    return "not built (pure-Python detectron2 installed by restr-d2)"


def get_cuda_version():
    return "not built"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise CompiledOpUnavailableError(
        f"detectron2 compiled op '{name}' is unavailable in this build: restr-d2 installs "
        "detectron2 v0.6 without its C++/CUDA extension. Ops that need it (deformable "
        "convolution, rotated boxes / NMS / ROIAlignRotated, the fast COCOeval) cannot run. "
        "Use the pure-Python alternative (e.g. COCOEvaluator(..., use_fast_impl=False)), or "
        "install your own compiled detectron2 (see README: 'Using your own detectron2')."
    )
'''

SETUP_PY = '''# Written by restr-d2's tools/install/install_detectron2.py: detectron2 v0.6 without compiled ops.
from setuptools import find_packages, setup

PROJECTS = {
    "detectron2.projects.point_rend": "projects/PointRend/point_rend",
    "detectron2.projects.deeplab": "projects/DeepLab/deeplab",
    "detectron2.projects.panoptic_deeplab": "projects/Panoptic-DeepLab/panoptic_deeplab",
}

setup(
    name="detectron2",
    version="0.6+restr.d2.pure",
    description="detectron2 v0.6 (pure Python build with NumPy 2 / Pillow 10 fixes)",
    packages=find_packages(include=("detectron2", "detectron2.*")) + list(PROJECTS),
    package_dir=PROJECTS,
    package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"],
                  "detectron2": ["''' + PATCH_MARKER + '''"]},
    include_package_data=True,
    python_requires=">=3.8",
)
'''

LAUNCH_OLD_ASSERT = (
    '    assert torch.cuda.is_available(), "cuda is not available. Please check your installation."\n'
)
LAUNCH_NEW_ASSERT = "    has_gpu = torch.cuda.is_available()\n"
LAUNCH_OLD_BACKEND = 'backend="NCCL",'
LAUNCH_NEW_BACKEND = 'backend="NCCL" if has_gpu else "GLOO",'
LAUNCH_OLD_DEVICE = (
    "    assert num_gpus_per_machine <= torch.cuda.device_count()\n"
    "    torch.cuda.set_device(local_rank)\n"
)
LAUNCH_NEW_DEVICE = (
    "    if has_gpu:\n"
    "        assert num_gpus_per_machine <= torch.cuda.device_count()\n"
    "        torch.cuda.set_device(local_rank)\n"
)

NUMPY_ALIAS = re.compile(r"\bnp\.(int|float|bool|str|object)\b(?![\w])")


def log(msg):
    print(f"[install_detectron2] {msg}", flush=True)


def working_detectron2():
    """Return (version, path) of an importable detectron2 that has what we need, else None."""
    code = (
        "import detectron2, detectron2.engine, detectron2.modeling, "
        "detectron2.projects.point_rend, detectron2.projects.deeplab; "
        "print(detectron2.__version__, detectron2.__file__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()


def installed_patch_version():
    """Patch version of our build of detectron2 if that is what is installed, else None."""
    try:
        spec = importlib.util.find_spec("detectron2")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    marker = Path(spec.origin).parent / PATCH_MARKER
    if not marker.exists():
        return None
    first = marker.read_text().split("\n", 1)[0]
    return first.replace("patch-version ", "")


def is_ours():
    return installed_patch_version() == PATCH_VERSION


def fetch_sdist():
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE_DIR.glob("pb1-detectron2-0.6.tar.gz")) + sorted(
        CACHE_DIR.glob("pb1_detectron2-0.6.tar.gz")
    )
    if found:
        return found[0]
    log(f"downloading the {SDIST} source release into {CACHE_DIR}")
    # --no-build-isolation: its setup.py imports torch to prepare metadata.
    subprocess.check_call(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "--no-build-isolation", "-q", "-d", str(CACHE_DIR), SDIST]
    )
    found = sorted(CACHE_DIR.glob("pb1*detectron2-0.6.tar.gz"))
    if not found:
        sys.exit(f"[install_detectron2] ERROR: pip did not leave {SDIST} in {CACHE_DIR}")
    return found[0]


# cv2.imread returns None for a missing or unreadable file; DefaultPredictor then failed with
# "'NoneType' object is not subscriptable". Say what was given and how to get a named error.
PREDICTOR_OLD_CALL = """        with torch.no_grad():  # https://github.com/sphinx-doc/sphinx/issues/4258
            # Apply pre-processing to image.
"""
PREDICTOR_NEW_CALL = """        if not hasattr(original_image, "shape") or len(original_image.shape) != 3:
            raise TypeError(
                "DefaultPredictor expects an image array of shape (H, W, C), got "
                + ("None: cv2.imread returns None for a missing or unreadable file; read images with "
                   "segmentation_core.validation.read_image_checked(path, 'BGR'), which names the file and the reason"
                   if original_image is None else f"{type(original_image).__name__} "
                   f"{getattr(original_image, 'shape', '')}")
            )
        with torch.no_grad():  # https://github.com/sphinx-doc/sphinx/issues/4258
            # Apply pre-processing to image.
"""


def replace_once(path, old, new):
    text = path.read_text()
    if old not in text:
        sys.exit(f"[install_detectron2] ERROR: patch target not found in {path}: {old!r}")
    path.write_text(text.replace(old, new, 1))


def patch_tree(src):
    """Apply the upstream compatibility fixes to an extracted v0.6 tree; return a summary."""
    changed = []
    for py in sorted(list((src / "detectron2").rglob("*.py")) + list((src / "projects").rglob("*.py"))):
        text = py.read_text()
        new = text.replace("Image.LINEAR", "Image.BILINEAR")
        new = NUMPY_ALIAS.sub(lambda m: m.group(1), new)
        if new != text:
            py.write_text(new)
            changed.append(str(py.relative_to(src)))
    common = src / "detectron2" / "data" / "common.py"
    replace_once(common, "self._rng.sample(self._fallback_candidates, k=1)[0]",
                 "self._rng.sample(sorted(self._fallback_candidates), k=1)[0]")
    changed.append("detectron2/data/common.py (MapDataset retry on Python >= 3.11)")
    launch = src / "detectron2" / "engine" / "launch.py"
    replace_once(launch, LAUNCH_OLD_ASSERT, LAUNCH_NEW_ASSERT)
    replace_once(launch, LAUNCH_OLD_BACKEND, LAUNCH_NEW_BACKEND)
    replace_once(launch, LAUNCH_OLD_DEVICE, LAUNCH_NEW_DEVICE)
    changed.append("detectron2/engine/launch.py (gloo + no cuda.set_device without a GPU)")
    defaults = src / "detectron2" / "engine" / "defaults.py"
    replace_once(defaults, PREDICTOR_OLD_CALL, PREDICTOR_NEW_CALL)
    changed.append("detectron2/engine/defaults.py (DefaultPredictor names a missing image)")
    (src / "detectron2" / "_C.py").write_text(C_STUB)
    changed.append("detectron2/_C.py (stub: compiled ops raise CompiledOpUnavailableError)")
    (src / "setup.py").write_text(SETUP_PY)
    summary = f"patch-version {PATCH_VERSION}\nsource: {SDIST}\n" + "\n".join(changed) + "\n"
    (src / "detectron2" / PATCH_MARKER).write_text(summary)
    return changed


def install_from_sdist(wheel_dir=None):
    """Patch the sdist and install it; with ``wheel_dir``, build a wheel there instead (pure
    Python, ``py3-none-any``: it installs on another machine without network or compiler)."""
    sdist = fetch_sdist()
    with tempfile.TemporaryDirectory(prefix="d2src-") as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (root,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        changed = patch_tree(root)
        log(f"patched {len(changed)} files for NumPy 2 / Pillow 10 / CPU launch")
        # Configs live in detectron2/model_zoo/configs in the sdist already.
        shutil.rmtree(root / "pb1_detectron2.egg-info", ignore_errors=True)
        if wheel_dir is not None:
            Path(wheel_dir).mkdir(parents=True, exist_ok=True)
            subprocess.check_call(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "-w", str(wheel_dir), str(root)]
            )
            built = sorted(Path(wheel_dir).glob("detectron2-0.6*.whl"))
            if not built:
                sys.exit(f"[install_detectron2] ERROR: pip wheel left no detectron2 wheel in {wheel_dir}")
            log(f"built {built[-1]} (pure Python build, not installed)")
            return
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
             "--force-reinstall", str(root)]
        )
    log("installed detectron2 0.6 (pure Python build)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true",
                        help="reinstall our patched build even if a working detectron2 exists")
    parser.add_argument("--wheel-dir", metavar="DIR",
                        help="build the patched pure-Python wheel into DIR instead of installing it "
                        "(for a machine without network: tools/benchmark/offline_kit.py)")
    args = parser.parse_args()
    if args.wheel_dir:
        install_from_sdist(wheel_dir=args.wheel_dir)
        return

    local_src = os.environ.get("DETECTRON2_SRC")
    existing = working_detectron2()
    outdated = installed_patch_version() not in (None, PATCH_VERSION)
    if outdated:
        log(f"our detectron2 build has patch version {installed_patch_version()}, "
            f"current is {PATCH_VERSION}: reinstalling")
    if existing and not args.force and not outdated:
        from_local_src = local_src and str(Path(local_src).resolve()) in existing
        if not local_src or from_local_src:
            origin = ("restr-d2 pure-Python build" if is_ours()
                      else "your own installation, left alone")
            log(f"detectron2 {existing} works ({origin})")
            return
    if local_src:
        if not Path(local_src, "setup.py").exists():
            sys.exit(f"[install_detectron2] ERROR: DETECTRON2_SRC={local_src} is not a detectron2 "
                     "source checkout (no setup.py there). Unset it to use the bundled build.")
        log(f"installing your detectron2 checkout {local_src} (pip install -e)")
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                               "-e", local_src])
    else:
        install_from_sdist()
    if not working_detectron2():
        sys.exit("[install_detectron2] ERROR: detectron2 was installed but does not import; "
                 f"run `{sys.executable} -c 'import detectron2.engine'` to see why.")


if __name__ == "__main__":
    main()
