"""The installer's checks, its patching of detectron2 v0.6, and what the built wheels hold."""
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from tests.helpers.paths import REPO as REPOSITORY

REPO = REPOSITORY


def _load(name):
    return importlib.import_module(f"tools.install.{name}")


def test_unsupported_python_and_torch_are_rejected_clearly():
    checks = _load("install_checks")
    assert checks.check_python((3, 11, 7)) is None
    msg = checks.check_python((3, 8, 10))
    assert "Python 3.8 is not supported" in msg and "PYTHON=" in msg
    assert checks.check_torch("2.14.1+cu130") is None
    assert "torch 1.13.1 is too old" in checks.check_torch("1.13.1")


def test_a_full_disk_is_named_before_pip_runs(tmp_path):
    checks = _load("install_checks")
    gib = 2**30
    assert checks.check_disk("/env", 8 * gib, torch_installed=False) is None
    msg = checks.check_disk("/env", 3 * gib, torch_installed=False)
    assert "/env has 3.0 GiB free" in msg and "7.0 GiB" in msg and "VENV=" in msg
    # with torch already there, only the rest has to fit
    assert checks.check_disk("/env", 3 * gib, torch_installed=True) is None
    # the command line looks at the nearest folder that exists (a venv not yet created)
    out = subprocess.run([sys.executable, "tools/install/install_checks.py", "disk", str(tmp_path / "new" / "venv")],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_numpy_alias_patch_is_exact(tmp_path):
    inst = _load("install_detectron2")
    src = "a = np.int(3); b = np.int64(2); c = np.float_; d = x.astype(np.bool); e = np.str"
    assert inst.NUMPY_ALIAS.sub(lambda m: m.group(1), src) == (
        "a = int(3); b = np.int64(2); c = np.float_; d = x.astype(bool); e = str"
    )


def test_launch_patched_for_cpu():
    import importlib

    # `detectron2.engine.launch` is also a function name, so import the module explicitly
    launch_module = importlib.import_module("detectron2.engine.launch")
    text = Path(launch_module.__file__).read_text()
    assert 'backend="NCCL" if has_gpu else "GLOO"' in text
    assert "assert torch.cuda.is_available()" not in text


def test_second_install_is_a_no_op():
    out = subprocess.run(["bash", "tools/install/install.sh"], cwd=REPO, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "VENV": str(Path(sys.prefix)),
                              "PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout


def test_detectron2_builds_as_a_pure_python_wheel(tmp_path):
    """What the kit carries: our patched detectron2, installable on any Python 3 without a compiler."""
    cached = sorted((REPO / ".cache").glob("pb1*detectron2-0.6.tar.gz"))
    assert cached, "make install leaves the detectron2 source release in .cache/; run it first"
    out = subprocess.run([sys.executable, "tools/install/install_detectron2.py", "--wheel-dir", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"detectron2/_C.py", "detectron2/_restr_d2_patches.txt", "detectron2/engine/launch.py",
            "detectron2/projects/deeplab/__init__.py"} <= names
    launch = zipfile.ZipFile(wheel).read("detectron2/engine/launch.py").decode()
    assert "assert torch.cuda.is_available()" not in launch


def test_a_built_wheel_of_this_project_holds_the_files_its_code_reads(tmp_path):
    """A non-editable install (`pip install .`, or the kit's install on another machine) must carry
    the data files beside the modules, and the entry points that register the families."""
    packages = ("restr_d2", "maskformer_d2", "segmentation_core", "tools", "demo")
    tracked = subprocess.run(["git", "ls-files", *packages], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    data = [f for f in tracked if not f.endswith((".py", ".md", ".sh"))]
    assert "maskformer_d2/data/datasets/_ade20k_full_classes.txt" in data
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    src = tmp_path / "src"
    for pkg in packages:
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "setup.py", src / "setup.py")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "-w", str(tmp_path / "wheel"), str(src)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [f for f in data if f not in names] == []
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[restr_d2.plugins]" in text and "maskformer_d2 = maskformer_d2" in text
