"""Killed training resumes exactly; checkpoints are atomic; corrupt ones are detected and
skipped; non-finite losses stop (or skip) a step before it touches the weights."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from segmentation_core.resume import CorruptCheckpointError, ResilientCheckpointer
from tests.helpers.paths import REPO

SCRIPT = REPO / "tests" / "helpers" / "toy_training.py"


def run_toy(out, max_iter, *args, check=True):
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), str(max_iter), *args],
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def final_weights(out):
    return torch.load(out / "final_weights.pt", weights_only=True)


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run_toy(out, 20)
    return final_weights(out)


def test_sigkill_then_resume_is_bit_exact(tmp_path, uninterrupted):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(tmp_path), "20", "--sleep", "0.15"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (tmp_path / "model_0000009.pth").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before the kill"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "model_final.pth").exists()
    run_toy(tmp_path, 20, "--resume")
    assert_same_weights(final_weights(tmp_path), uninterrupted)


def test_worker_count_does_not_change_the_run(tmp_path, uninterrupted):
    run_toy(tmp_path, 20, "--workers", "2")
    assert_same_weights(final_weights(tmp_path), uninterrupted)


def test_resume_skips_a_truncated_checkpoint(tmp_path, uninterrupted, caplog):
    run_toy(tmp_path, 12)  # writes model_0000004, model_0000009, model_final
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    (tmp_path / "model_final.pth").unlink()
    ckpt = tmp_path / "model_0000009.pth"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    proc = run_toy(tmp_path, 20, "--resume")
    assert "model_0000009.pth' is corrupt or truncated" in proc.stderr + proc.stdout
    assert "falling back to the previous checkpoint" in proc.stderr + proc.stdout
    assert (tmp_path / "model_0000009.pth.corrupt").exists()
    # it resumed from iteration 4 and, the stream being exact, still ends where it should
    assert_same_weights(final_weights(tmp_path), uninterrupted)


def test_corrupt_weights_file_names_the_file(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    ckpt = ResilientCheckpointer(torch.nn.Linear(2, 2), str(tmp_path / "out"))
    with pytest.raises(CorruptCheckpointError, match="weights.pth' is corrupt or truncated"):
        ckpt.load(str(bad))
    with pytest.raises(FileNotFoundError, match="does-not-exist.pth' does not exist. Check MODEL.WEIGHTS"):
        ckpt.load(str(tmp_path / "does-not-exist.pth"))


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ckpt = ResilientCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000004")

    def dying_save(obj, f, *a, **k):
        f.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000009")
    monkeypatch.undo()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert not (tmp_path / "model_0000009.pth").exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    assert ckpt.resume_or_load("", resume=True) is not None


def test_nan_loss_stops_before_the_step_and_names_the_term(tmp_path):
    proc = run_toy(tmp_path, 20, "--nan-at", "7", check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert "NonFiniteLossError" in err and "non-finite loss at iteration 7: loss_mse=nan" in err
    assert "model_0000004.pth' is kept" in err
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert not (tmp_path / "model_final.pth").exists()


def test_nan_loss_skip_mode(tmp_path):
    proc = run_toy(tmp_path, 12, "--nan-at", "7", "--nonfinite", "skip")
    assert "skipped=1" in proc.stdout
    assert "skipping iteration 7: non-finite loss {'loss_mse': nan}" in proc.stderr
    weights = final_weights(tmp_path)
    assert all(torch.isfinite(v).all() for v in weights.values())
