"""Crashes around checkpoints: SIGKILL mid-write, a corrupted latest checkpoint, a full disk. Nothing earlier lost."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from tests.reliability import tally
from tests.reliability.helpers import metric_steps, start_cli, tunesmith, wait_for, write_config
from tunesmith.checkpoint_files import checkpoint_problem

pytestmark = pytest.mark.slow

# Stop inside the second checkpoint's write: model weights written, optimizer not yet.
STALL_IN_SECOND_SAVE = """
import time, transformers
_save = transformers.Trainer._save_optimizer_and_scheduler
def _stall(self, output_dir):
    if self.state.global_step == 2 * {second}:
        open({mark!r}, "w").close()
        time.sleep(600)
    return _save(self, output_dir)
transformers.Trainer._save_optimizer_and_scheduler = _stall
"""
# After the first checkpoint, cap the size of any file this process writes (what a full disk does to a write).
FILE_SIZE_LIMIT = """
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of failing the write
from tunesmith.train import callbacks
_on_save = callbacks.CheckpointCallback.on_save
def on_save(self, args, state, control, **kwargs):
    out = _on_save(self, args, state, control, **kwargs)
    if state.global_step == 1:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, resource.RLIM_INFINITY))
    return out
callbacks.CheckpointCallback.on_save = on_save
"""
# Planted bug: make room before writing by deleting the earlier checkpoints (what a careless rotation does).
ROTATE_FIRST = """
import shutil, transformers
from pathlib import Path
_save = transformers.Trainer._save_checkpoint
def _save_checkpoint(self, model, trial):
    for old in Path(self.args.output_dir).glob("step-*"):
        shutil.rmtree(old)
    return _save(self, model, trial)
transformers.Trainer._save_checkpoint = _save_checkpoint
"""
NO_VERIFY = "import tunesmith.checkpoint_files as c; c.checkpoint_problem = lambda folder: None"


def resumed_from(run: Path) -> str:
    return json.loads((run / "manifest.json").read_text())["resumes"][-1]["from"]


def intact_checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step-*") if checkpoint_problem(p) is None)


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    config = write_config(tmp_path, max_steps=4, save_steps=1)
    run, mark = tmp_path / "runs" / "r", tmp_path / "in-second-save"
    proc = start_cli("train", str(config), cwd=tmp_path, patch=STALL_IN_SECOND_SAVE.format(mark=str(mark), second=1))
    wait_for(mark.exists, proc, what="the second checkpoint write")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "checkpoints" / "checkpoint-2").is_dir()  # the half-written one, under its temporary name
    assert intact_checkpoints(run) == ["step-1"]

    resumed = tunesmith("train", str(config), "--resume", "--set", "train.max_steps=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from(run).endswith("step-1") and metric_steps(run) == [1, 2, 3]
    assert not list((run / "checkpoints").glob("checkpoint-*"))
    tally.fault("SIGKILL inside a checkpoint write", "previous checkpoint intact, --resume from it finished")


def trained_with_truncated_latest(tmp_path):
    config = write_config(tmp_path, max_steps=2, save_steps=1)
    run = tmp_path / "runs" / "r"
    first = tunesmith("train", str(config), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    weights = run / "checkpoints" / "step-2" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    return config, run


def test_corrupt_latest_checkpoint_is_detected_and_the_previous_one_used(tmp_path):
    config, run = trained_with_truncated_latest(tmp_path)
    resumed = tunesmith("train", str(config), "--resume", "--set", "train.max_steps=3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(
        r"warning: checkpoint \S+step-2 is damaged \(adapter_model.safetensors has \d+ bytes", resumed.stderr
    )
    assert resumed_from(run).endswith("step-1") and metric_steps(run) == [1, 2, 3]
    tally.fault("truncated latest checkpoint", "detected by checksum, resumed from the previous one with a warning")


def test_planted_bug_without_checksums_the_damaged_checkpoint_is_used(tmp_path):
    config, run = trained_with_truncated_latest(tmp_path)
    proc = start_cli("train", str(config), "--resume", "--set", "train.max_steps=3", cwd=tmp_path, patch=NO_VERIFY)
    proc.communicate(timeout=300)
    assert proc.returncode != 0 or not resumed_from(run).endswith("step-1")


def test_byte_flip_keeps_the_size_but_not_the_checksum(tmp_path):
    from tunesmith.checkpoint_files import write_checksums

    folder = tmp_path / "step-2"
    folder.mkdir()
    (folder / "optimizer.pt").write_bytes(bytes(range(256)) * 4)
    write_checksums(folder)
    assert checkpoint_problem(folder) is None
    data = bytearray((folder / "optimizer.pt").read_bytes())
    data[100] ^= 0x01
    (folder / "optimizer.pt").write_bytes(bytes(data))
    assert checkpoint_problem(folder) == "optimizer.pt does not match its checksum (corrupted)"
    (folder / "optimizer.pt").unlink()
    assert checkpoint_problem(folder) == "optimizer.pt is missing"


def disk_full_run(tmp_path, patch: str):
    config = write_config(
        tmp_path, max_steps=3, save_steps=1, eval_steps=1000
    )  # no best/ write: the checkpoint is what fails
    proc = start_cli("train", str(config), cwd=tmp_path, patch=patch)
    _, err = proc.communicate(timeout=300)
    return config, proc.returncode, err, tmp_path / "runs" / "r"


def test_disk_full_during_a_checkpoint_write_is_clear_and_loses_nothing(tmp_path):
    config, returncode, err, run = disk_full_run(tmp_path, FILE_SIZE_LIMIT)
    assert returncode == 1, err[-3000:]
    assert "disk is full or the file is too large" in err and "step-1, is intact" in err, err[-3000:]
    assert "internal error" not in err and "Traceback" not in err
    assert intact_checkpoints(run) == ["step-1"] and not list((run / "checkpoints").glob("checkpoint-*"))

    resumed = tunesmith("train", str(config), "--resume", "--set", "train.max_steps=2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_from(run).endswith("step-1") and metric_steps(run) == [1, 2]
    tally.fault(
        "file-size limit (disk full) in a checkpoint write", "clear message, exit 1, step-1 kept, --resume finished"
    )


def test_planted_bug_rotating_before_writing_loses_the_earlier_checkpoint(tmp_path):
    _, returncode, err, run = disk_full_run(tmp_path, FILE_SIZE_LIMIT + ROTATE_FIRST)
    assert returncode != 0 and intact_checkpoints(run) == [], err[-3000:]  # what the test above would catch
