"""The installer's checks and its patching of detectron2 v0.6."""
import importlib.util
import subprocess
import sys
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
