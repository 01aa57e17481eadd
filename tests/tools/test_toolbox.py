"""The toolbox's shape: every tool imports as a module of the installed ``tools`` package
(nothing edits ``sys.path``), and every ``tools/...`` path the docs, configs, Makefile and code
name exists."""
import os
import re
import subprocess
import sys

from tests.helpers.paths import REPO

TOOLS = sorted(p for p in (REPO / "tools").rglob("*.py") if p.name != "__init__.py")


def test_tools_import_as_package_modules_without_editing_sys_path():
    """Every tool imports as ``tools.<job>.<module>`` in a fresh interpreter (an import that only
    worked beside the script fails here; a fresh one, as demo/demo.py puts demo/ on sys.path)."""
    editing = [str(p.relative_to(REPO)) for p in TOOLS if "sys.path" in p.read_text()]
    assert editing == [], "import siblings as tools.<job>.<module>"
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in TOOLS]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok', len(sys.argv) - 1)"
    out = subprocess.run([sys.executable, "-c", code, *modules], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", str(len(modules))]


def test_demo_scripts_run_from_anywhere_without_editing_sys_path(tmp_path):
    """``python demo/demo.py`` finds ``predictor.py`` beside it the way Python runs any script
    (its folder comes first on ``sys.path``) and the packages through the editable install: run
    from another folder with no PYTHONPATH, both demos start."""
    demos = [REPO / "demo" / "demo.py", REPO / "demo" / "web.py"]
    assert [str(p.relative_to(REPO)) for p in demos if "sys.path" in p.read_text()] == []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for script in demos:
        out = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "--config-file" in out.stdout


def _tracked_text_files():
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in out.split():
        path = REPO / name
        if path.suffix in (".py", ".md", ".yaml", ".sh", ".txt") or path.name == "Makefile":
            if path.is_file() and "fixtures" not in path.parts:
                yield path


# the official repositories' own tools, named where our configs say how their files were made
OFFICIAL_TOOLS = {"tools/convert-pretrained-swin-model-to-d2.py"}


def test_every_tools_path_named_in_the_repository_exists():
    missing = []
    for path in _tracked_text_files():
        for ref in re.findall(r"(?<![\w/.-])tools/[\w./-]*\w\.(?:py|sh)\b", path.read_text(errors="replace")):
            if not (REPO / ref).is_file() and ref not in OFFICIAL_TOOLS:
                missing.append(f"{path.relative_to(REPO)}: {ref}")
    assert missing == []


def test_readme_index_names_every_tool():
    """Every script (a ``__main__`` block, or a shell script) is in the README's toolbox index;
    the benchmark worker is started by the benchmark itself."""
    readme = (REPO / "README.md").read_text()
    scripts = [p for p in TOOLS if '__name__ == "__main__"' in p.read_text() and p.name != "worker.py"]
    scripts += sorted((REPO / "tools").rglob("*.sh"))
    assert len(scripts) >= 15
    assert [str(p.relative_to(REPO)) for p in scripts if f"`{p.relative_to(REPO)}`" not in readme] == []
