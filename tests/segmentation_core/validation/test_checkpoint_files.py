"""Checkpoint files: a truncated checkpoint read for ``--eval-only`` or by a predictor raises the
same ``CorruptCheckpointError`` naming the file as in training; checkpoints and
``last_checkpoint`` follow the process umask; stale ``model_*.pth.*.tmp`` files left by a kill
are removed (and logged) on the next start in the same output folder."""
import os

import pytest
import torch
from torch import nn

from segmentation_core.checkpoint_policy import load_weights_checked
from segmentation_core.resume import CorruptCheckpointError, ResilientCheckpointer


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)


def _truncated(tmp_path):
    good = tmp_path / "model_0000009.pth"
    ResilientCheckpointer(Tiny(), str(tmp_path)).save("model_0000009", iteration=9)
    data = good.read_bytes()
    bad = tmp_path / "model_trunc.pth"
    bad.write_bytes(data[: len(data) // 2])
    return bad


@pytest.mark.parametrize("policy", ["complete", "lenient"])
def test_truncated_checkpoint_at_eval_only_is_corrupt_checkpoint_error(tmp_path, policy):
    bad = _truncated(tmp_path)
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint '{bad}' is corrupt or truncated"):
        load_weights_checked(Tiny(), str(bad), policy=policy)  # train_net --eval-only, ReferringPredictor


def test_eval_only_loading_logs_path_and_iteration(tmp_path, log_lines):
    ResilientCheckpointer(Tiny(), str(tmp_path)).save("model_0000009", iteration=9)
    path = str(tmp_path / "model_0000009.pth")
    lines = log_lines("segmentation_core.checkpoint_policy")
    load_weights_checked(Tiny(), path)
    assert f"loaded weights {path} (iteration 9)" in lines


def test_checkpoints_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ResilientCheckpointer(Tiny(), str(tmp_path)).save("model_final")
    finally:
        os.umask(old)
    for name in ("model_final.pth", "last_checkpoint"):
        assert oct(os.stat(tmp_path / name).st_mode & 0o777) == oct(0o644), name
    torch.save({}, tmp_path / "plain.pth")  # what torch.save gives under the same umask
    old = os.umask(0o077)
    try:
        ResilientCheckpointer(Tiny(), str(tmp_path)).save("model_private")
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "model_private.pth").st_mode & 0o777) == oct(0o600)


def test_stale_temp_files_are_removed_on_the_next_start(tmp_path, log_lines):
    stale = [tmp_path / "model_0000004.pth.abc123.tmp", tmp_path / "last_checkpoint.x1y2.tmp"]
    for p in stale:
        p.write_bytes(b"partial")
    keep = [tmp_path / "notes.tmp", tmp_path / "model_0000004.pth"]
    for p in keep:
        p.write_bytes(b"mine")
    lines = log_lines("segmentation_core.resume.checkpointer")
    ResilientCheckpointer(Tiny(), str(tmp_path))
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    [line] = lines
    assert "removed 2 partial checkpoint file(s)" in line and "model_0000004.pth.abc123.tmp" in line
