"""bench/gpu_check.py --dry-run: the GPU check's whole code path (model build, tunesmith and TRL LoRA/QLoRA
SFT, GRPO, export) on CPU with a tiny model, so the script a GPU machine runs is known to work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run_runs_every_stage(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), TUNESMITH_NO_PROGRESS="1")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert "all stages ran" in out and "FAILED" not in out
    for row in ("| tunesmith lora |", "| TRL SFTTrainer lora |", "| tunesmith qlora |", "| TRL SFTTrainer qlora |"):
        assert row in out
    assert "GRPO: 2 steps" in out
    assert list((tmp_path / "runs" / "sft-lora" / "export").glob("*f16.gguf"))
