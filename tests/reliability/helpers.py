"""Shared pieces of the reliability tests: a tiny training config, the CLI as a real process, fault tally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.e2e.test_train_sft import write_chat_data

REPO = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TUNESMITH_NO_PROGRESS": "1",
    "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO),
}


def write_config(folder: Path, name: str = "r", **train) -> Path:
    """A tiny-model LoRA run on addition chats; `train` overrides the train section."""
    data = write_chat_data(folder, n=64)
    settings = dict(
        max_steps=2, batch_size=4, grad_accum=1, learning_rate=3e-3, logging_steps=1, save_steps=1, save_total_limit=3
    )
    settings.update(train)
    raw = {
        "run": {"name": name, "output_dir": str(folder / "runs")},
        "model": {"name_or_path": "tiny:qwen2", "tiny": {"layers": 1, "hidden": 32, "heads": 2, "vocab_size": 300}},
        "data": {"sources": [{"path": str(data)}], "max_length": 64},
        "train": settings,
        "tracking": {"report_to": ["none"]},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def tunesmith(
    *args: str, cwd: Path | None = None, timeout: float = 180, env: dict | None = None
) -> subprocess.CompletedProcess:
    """The CLI in a real process, as a user runs it."""
    cmd = [sys.executable, "-m", "tunesmith.cli.main", *args]
    return subprocess.run(cmd, env=env or ENV, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start(*args: str, cwd: Path | None = None, script: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """A long-running child: the CLI, or a Python script with the CLI's arguments."""
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "tunesmith.cli.main", *args]
    return subprocess.Popen(cmd, env=env or ENV, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the child exited ({proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def metric_steps(run: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


# The CLI in a child process, after an optional patch (a planted bug or an injected fault) given as code.
CLI_WITH = """
import sys
{patch}
from tunesmith.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def start_cli(*args: str, patch: str = "", cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    return start(*args, cwd=cwd, script=CLI_WITH.format(patch=patch), env=env)
