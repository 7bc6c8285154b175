"""SIGINT / SIGTERM during training write a checkpoint and print the resume command; --resume continues from it."""

from __future__ import annotations

import json
import re
import signal

import pytest

from tests.reliability import tally
from tests.reliability.helpers import metric_steps, start_cli, tunesmith, wait_for, write_config
from tunesmith.checkpoint_files import checkpoint_problem

STEPS = 200
NO_HANDLER = (
    "from tunesmith.train.interrupt import InterruptCallback; InterruptCallback.on_train_begin = lambda *a, **k: None"
)


def interrupt(tmp_path, signum: int, patch: str = ""):
    """Start a long run, send `signum` once it has logged 3 steps; (returncode, stderr, run dir)."""
    config = write_config(tmp_path, max_steps=STEPS, save_steps=10_000)
    run = tmp_path / "runs" / "r"
    proc = start_cli("train", str(config), cwd=tmp_path, patch=patch)
    wait_for(lambda: (run / "metrics.jsonl").exists() and len(metric_steps(run)) >= 3, proc, what="3 logged steps")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, run


def interruption_problem(returncode: int, err: str, run, signum: int) -> str | None:
    """None when the run stopped as promised: exit 128+signal, a checkpoint intact, the resume command printed."""
    if returncode != 128 + signum:
        return f"exit code {returncode}, expected {128 + signum}"
    saved = re.search(r"training stopped at step (\d+); checkpoint (\S+)", err)
    if not saved:
        return f"no checkpoint named in: {err[-500:]}"
    step = int(saved.group(1))
    checkpoint = run / "checkpoints" / f"step-{step}"
    if not checkpoint.is_dir() or checkpoint_problem(checkpoint):
        return f"{checkpoint} missing or damaged"
    if f"continue with: tunesmith train {run / 'config.yaml'} --resume" not in err:
        return "no resume command printed"
    return None


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_resume_continues_from_it(tmp_path):
    returncode, err, run = interrupt(tmp_path, signal.SIGTERM)
    assert interruption_problem(returncode, err, run, signal.SIGTERM) is None, err[-3000:]
    step = int(re.search(r"stopped at step (\d+)", err).group(1))
    assert "Traceback" not in err and not (run / "final").exists()

    command = re.search(r"continue with: (tunesmith train \S+ --resume)", err).group(1).split()
    # the printed command, two more steps only: this machine trains the tiny model at about a step a second
    resumed = tunesmith(*command[1:], "--set", f"train.max_steps={step + 2}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["resumes"][-1]["from"].endswith(f"step-{step}")
    assert metric_steps(run) == list(range(1, step + 3))  # no step lost, none logged twice
    tally.fault("SIGTERM mid-training", f"checkpoint step-{step}, exit 143, printed --resume command continued from it")


@pytest.mark.slow
def test_sigint_writes_a_checkpoint(tmp_path):
    returncode, err, run = interrupt(tmp_path, signal.SIGINT)
    assert interruption_problem(returncode, err, run, signal.SIGINT) is None, err[-3000:]
    tally.fault("SIGINT (Ctrl-C) mid-training", "checkpoint written, exit 130")


@pytest.mark.slow
def test_planted_bug_no_signal_handler_is_caught(tmp_path):
    returncode, err, run = interrupt(tmp_path, signal.SIGTERM, patch=NO_HANDLER)
    assert interruption_problem(returncode, err, run, signal.SIGTERM) is not None
    assert not any((run / "checkpoints").glob("step-*"))


def test_checker_is_not_fooled_by_a_missing_checkpoint(tmp_path):
    err = "error: SIGTERM: training stopped at step 4; checkpoint x\n  hint: continue with: tunesmith train y --resume"
    assert "missing or damaged" in interruption_problem(143, err, tmp_path, signal.SIGTERM)
    assert "exit code" in interruption_problem(1, err, tmp_path, signal.SIGTERM)
