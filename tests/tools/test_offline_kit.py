"""The kit for benchmarking on a machine without network (tools/benchmark/offline_kit.py) and its
run script (tools/benchmark/bf16_check.sh)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO
from tools.benchmark import offline_kit


def test_pins_are_read_from_a_constraints_file():
    pins = offline_kit.pinned_versions(
        "# comment\nfvcore==0.1.5.post20221221\nHydra_Core == 1.3.8  # note\ntorch>=2\nyacs==0.1.8;python_version>'3'\n")
    assert pins == {"fvcore": "0.1.5.post20221221", "hydra-core": "1.3.8", "yacs": "0.1.8"}


def test_every_kit_package_is_pinned_in_our_constraints():
    pins = offline_kit.pinned_versions(offline_kit.CONSTRAINTS.read_text())
    listed = offline_kit.pinned(offline_kit.KIT_PURE + offline_kit.KIT_BINARY, pins)
    assert len(listed) == len(offline_kit.KIT_PURE) + len(offline_kit.KIT_BINARY)
    assert all("==" in p for p in listed)


def test_an_unpinned_package_is_refused_by_name():
    with pytest.raises(ValueError, match="notapackage not pinned in constraints.txt"):
        offline_kit.pinned(["fvcore", "notapackage"], {"fvcore": "1"})


def test_binary_wheels_are_fetched_for_the_other_python_and_platform(tmp_path):
    cmd = offline_kit.download_command(["pycocotools"], {"pycocotools": "2.0.11"}, tmp_path, "3.12", python="py")
    assert cmd[:4] == ["py", "-m", "pip", "download"]
    assert "--only-binary=:all:" in cmd and "--no-deps" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and cmd[cmd.index("-d") + 1] == str(tmp_path)
    assert "manylinux_2_17_x86_64" in cmd and cmd[-1] == "pycocotools==2.0.11"
    pure = offline_kit.pure_wheel_command(["yacs"], {"yacs": "0.1.8"}, tmp_path, python="py")
    assert pure == ["py", "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), "yacs==0.1.8"]


def test_wheels_for_one_interpreter_are_told_apart_from_pure_ones():
    names = ["fvcore-0.1.5-py3-none-any.whl", "six-1.16.0-py2.py3-none-any.whl",
             "pycocotools-2.0.11-cp312-abi3-manylinux2014_x86_64.whl", "x-1-cp311-cp311-linux_x86_64.whl"]
    assert offline_kit.not_pure([Path(n) for n in names]) == names[2:]


def test_the_run_script_parses_and_refuses_a_missing_kit_with_the_fix(tmp_path):
    script = REPO / "tools" / "benchmark" / "bf16_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    out = subprocess.run(["bash", str(script)], cwd=REPO, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "KIT": str(tmp_path / "none"),
                              "OUT": str(tmp_path / "out"), "PYTHON": sys.executable})
    assert out.returncode == 2
    assert "no finished kit in" in out.stderr and "offline_kit.py --dest" in out.stderr
    # wheels without the manifest (an interrupted kit) are refused the same way
    kit = tmp_path / "partial"
    kit.mkdir()
    (kit / "fvcore-0.1.5-py3-none-any.whl").write_bytes(b"")
    out = subprocess.run(["bash", str(script)], cwd=REPO, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "KIT": str(kit), "OUT": str(tmp_path / "out"),
                              "PYTHON": sys.executable})
    assert out.returncode == 2 and "no finished kit in" in out.stderr


def test_a_kit_for_another_python_is_refused_with_the_fix(tmp_path):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "fake-1.0-cp27-cp27mu-manylinux1_x86_64.whl").write_bytes(b"")
    (kit / offline_kit.MANIFEST).write_text("fake-1.0-cp27-cp27mu-manylinux1_x86_64.whl\n")
    out = subprocess.run(["bash", str(REPO / "tools" / "benchmark" / "bf16_check.sh")], cwd=REPO,
                         capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "KIT": str(kit), "OUT": str(tmp_path / "out"),
                              "PYTHON": sys.executable})
    assert out.returncode == 2
    assert "not a supported wheel" in out.stderr and "offline_kit.py --python-version" in out.stderr
    assert not (tmp_path / "out" / "environment.txt").exists()  # stopped before measuring


def test_the_run_script_writes_at_most_eight_files():
    """An accelerator host sends back at most 8 files from $OUT."""
    text = (REPO / "tools" / "benchmark" / "bf16_check.sh").read_text()
    written = set(re.findall(r'"\$OUT/([A-Za-z0-9_.]+)"', text))
    for name in re.findall(r"^\s*bench ([A-Za-z0-9_]+) ", text, flags=re.M):  # NAME.json + NAME.log
        written |= {f"{name}.json", f"{name}.log"}
    assert "environment.txt" in written and "train.json" in written
    assert len(written) <= 8, sorted(written)


def test_a_second_kit_replaces_only_the_wheels_of_the_first(tmp_path):
    (tmp_path / "a-1-py3-none-any.whl").write_bytes(b"")
    (tmp_path / offline_kit.MANIFEST).write_text("a-1-py3-none-any.whl\n")
    (tmp_path / "notes.txt").write_text("mine")
    assert offline_kit.clear_previous_kit(tmp_path) == ["a-1-py3-none-any.whl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_folder_with_someone_elses_wheels_is_refused_and_left_alone(tmp_path):
    (tmp_path / "mine-2-py3-none-any.whl").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="did not put there .*mine-2-py3-none-any.whl.*empty folder"):
        offline_kit.clear_previous_kit(tmp_path)
    assert (tmp_path / "mine-2-py3-none-any.whl").read_bytes() == b"x"
    out = subprocess.run([sys.executable, "tools/benchmark/offline_kit.py", "--dest", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 1 and "did not put there" in out.stderr
    assert (tmp_path / "mine-2-py3-none-any.whl").exists()


def test_a_malformed_python_version_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "tools/benchmark/offline_kit.py", "--dest", str(tmp_path),
                          "--python-version", "312"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "give the other machine's Python as 3.X" in out.stderr


def test_without_the_package_index_the_failing_step_and_the_need_are_named(tmp_path):
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    out = subprocess.run([sys.executable, "tools/benchmark/offline_kit.py", "--dest", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 1
    assert "fetching or building the pure-Python wheels failed" in out.stderr
    assert "needs the package index" in out.stderr
    assert not (tmp_path / offline_kit.MANIFEST).exists()  # no manifest: not a finished kit
