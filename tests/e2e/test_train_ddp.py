"""`torchrun --nproc_per_node 2` on CPU: real DDP (each rank trains on its own shard), one run directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.data.synth import write_intent_dataset
from tunesmith.run_dir import RunDir

pytestmark = pytest.mark.slow


def test_torchrun_two_cpu_processes_train_one_model(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    data = write_intent_dataset(tmp_path / "d.jsonl", rows=200, seed=0)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"run: {{name: ddp, output_dir: {tmp_path / 'runs'}}}\nmodel: {{name_or_path: 'tiny:qwen2'}}\n"
        f"data: {{sources: [{{path: {data}}}], max_length: 128}}\n"
        "train: {mode: lora, max_steps: 4, batch_size: 4, grad_accum: 1, logging_steps: 1, save_steps: 2}\n"
        "tracking: {report_to: [none]}\n"
    )
    result = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29531",
            "-m",
            "tunesmith.cli.main",
            "train",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.count("trained 4 steps") == 1  # one summary, from rank 0
    run = RunDir.of(tmp_path / "runs" / "ddp")
    rows = [r for r in run.read_metrics() if "loss" in r]
    train_rows = json.loads(run.manifest.read_text())["data"]["train"]["rows"]
    # 4 steps x 4 examples x 2 ranks: twice the data one process would see in 4 steps
    assert rows[-1]["epoch"] == pytest.approx(32 / train_rows, abs=0.01)
    assert (run.final / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["step-2", "step-4"]
