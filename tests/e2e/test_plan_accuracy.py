"""Predicted vs measured peak memory and seconds per step on this CPU.

`tunesmith train` plans the run (plan.json) and measures its peak RSS and mean seconds per step
(manifest.json `measured`); right after, `tunesmith plan --json` in a fresh process with an empty cache
calibrates the time probes under the same conditions (same default threads, same machine, seconds apart).
Each run is its own process, so the peak is that run's alone.

Bound: every prediction within 20% of the measurement (absolute share of the measurement). Memory is measured
with train.lean_memory on, where the peak RSS is the live tensors the plan counts (with glibc's default heap
the RSS is higher: docs/plan.md). Time is measured with the default allocator users train with: a full
fine-tune (layers and optimizer), a LoRA run over 30 steps (the first steps of a fresh process run slower while
the heap grows; 6-step runs measured 15% slower per step than 30-step ones), and GRPO (generation, TRL's fused
output layer). A time measurement that misses is taken again once (on 2 shared cores single measurements move
by 10-20%), and the bound applies to the second. Planted bugs prove each check can fail: the full fine-tune's
memory without the AdamW states, the QLoRA memory without the checkpoint file pages, the time without the
layers' backward, and GRPO's time without generation all fall outside the bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.unit.test_plan import write_chats

pytestmark = pytest.mark.slow
BOUND = 0.20


def config(tmp_path, name: str, mode: str, tiny: dict, steps: int = 6, lean: bool = True) -> dict:
    return {
        "run": {"name": name, "output_dir": str(tmp_path / "runs"), "seed": 0, "overwrite": True},
        "model": {"name_or_path": "tiny:llama", "tiny": {"vocab_size": 512, **tiny}},
        "data": {
            "sources": [{"path": str(write_chats(tmp_path / "chat.jsonl", n=120))}],
            "max_length": 128,
            "split": {"val": 0.0, "test": 0.0},
        },
        "train": {
            "mode": mode,
            "max_steps": steps,
            "batch_size": 8,
            "grad_accum": 1,
            "save_steps": 1000,
            "lean_memory": lean,
        },
        "tracking": {"report_to": ["none"]},
    }


def cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "TUNESMITH_NO_PROGRESS": "1",
        "TUNESMITH_CACHE": str(tmp_path / "cache"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", *args], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def train_and_plan(tmp_path, cfg: dict) -> tuple[dict, dict, dict]:
    """(plan.json of the run, measured numbers, `plan --json` calibrated right after training)."""
    path = tmp_path / f"{cfg['run']['name']}.json"
    path.write_text(json.dumps(cfg))
    cli(tmp_path, "train", str(path))
    run = tmp_path / "runs" / cfg["run"]["name"]
    measured = json.loads((run / "manifest.json").read_text())["measured"]
    (tmp_path / "cache" / "plan" / "calibration.json").unlink(missing_ok=True)  # calibrate now, not earlier
    timed = json.loads(cli(tmp_path, "plan", str(path), "--json").stdout)
    return json.loads((run / "plan.json").read_text()), measured, timed


def measure_time(tmp_path, cfg: dict) -> tuple[dict, dict, dict]:
    """train_and_plan, once more when the time misses the bound."""
    result = train_and_plan(tmp_path, cfg)
    return result if time_ok(*result) else train_and_plan(tmp_path, cfg)


def error(predicted: float, measured: float) -> float:
    return abs(predicted / measured - 1)


def time_ok(plan, measured, timed) -> bool:
    return error(timed["seconds_per_step"], measured["seconds_per_step"]) <= BOUND


FULL = {"layers": 1, "hidden": 2048, "heads": 16}


def test_full_fine_tune_memory_within_20_percent_and_without_adamw_states_fails(tmp_path):
    plan, measured, _ = train_and_plan(tmp_path, config(tmp_path, "full", "full", FULL))
    peak = measured["peak_memory"]
    assert error(plan["peak"], peak) <= BOUND, f"predicted {plan['peak'] / 2**20:.0f} MiB, measured {peak / 2**20:.0f}"
    assert error(plan["peak"] - plan["parts"]["optimizer"], peak) > BOUND  # planted: no AdamW states


def test_full_fine_tune_time_within_20_percent_and_without_backward_fails(tmp_path):
    _, measured, timed = measure_time(tmp_path, config(tmp_path, "full", "full", FULL, steps=8, lean=False))
    predicted, seconds = timed["seconds_per_step"], measured["seconds_per_step"]
    assert timed["calibration"]["threads"] == measured["threads"]  # calibrated as training runs
    assert error(predicted, seconds) <= BOUND, f"predicted {predicted:.3f} s/step, measured {seconds:.3f}"
    c = timed["calibration"]
    backward = (c["layer_ms"] - c["layer_forward_ms"]) / 1e3  # planted: the layer's backward left out
    assert error(predicted - backward, seconds) > BOUND


def test_lora_memory_and_time_within_20_percent(tmp_path):
    """The LoRA step's time is the mean over the batches the run times (the plan draws them as the Trainer's
    seeded sampler does); at the typical batch alone this run (4 x 512, then 6 steps) missed by 24-38% in both
    directions."""
    plan, measured, _ = train_and_plan(tmp_path, config(tmp_path, "lora", "lora", LORA))
    assert error(plan["peak"], measured["peak_memory"]) <= BOUND
    _, measured, timed = measure_time(tmp_path, config(tmp_path, "lora-time", "lora", LORA, steps=30, lean=False))
    predicted, seconds = timed["seconds_per_step"], measured["seconds_per_step"]
    assert error(predicted, seconds) <= BOUND, f"predicted {predicted:.3f} s/step, measured {seconds:.3f}"


LORA = {"layers": 4, "hidden": 512, "heads": 8}


def grpo_config(tmp_path, name: str, lean: bool) -> dict:
    cfg = config(tmp_path, name, "lora", {**GRPO_MODEL, "vocab_size": 8192}, steps=5, lean=lean)
    cfg["method"] = "grpo"
    cfg["grpo"] = {"num_generations": 4, "max_completion_length": 24, "rewards": [{"name": "length"}]}
    return cfg


GRPO_MODEL = {"layers": 4, "hidden": 256, "heads": 4}


def test_grpo_memory_and_time_within_20_percent_and_without_generation_fails(tmp_path):
    """GRPO: TRL's fused output layer (its tiles, timed with its own function), generation in training mode,
    the prompts its RepeatSampler draws, left-padded to the longest of each step."""
    plan, measured, _ = train_and_plan(tmp_path, grpo_config(tmp_path, "grpo", lean=True))
    peak = measured["peak_memory"]
    assert error(plan["peak"], peak) <= BOUND, f"predicted {plan['peak'] / 2**20:.0f} MiB, measured {peak / 2**20:.0f}"
    _, measured, timed = measure_time(tmp_path, grpo_config(tmp_path, "grpo-time", lean=False))
    predicted, seconds = timed["seconds_per_step"], measured["seconds_per_step"]
    assert error(predicted, seconds) <= BOUND, f"predicted {predicted:.3f} s/step, measured {seconds:.3f}"
    assert error(predicted - timed["time"]["generation"], seconds) > BOUND  # planted: generation left out


def test_qlora_memory_within_20_percent_and_without_checkpoint_pages_fails(tmp_path):
    pytest.importorskip("bitsandbytes")
    cfg = config(tmp_path, "qlora", "qlora", {"layers": 1, "hidden": 2048, "heads": 16}, steps=2)
    plan, measured, _ = train_and_plan(tmp_path, cfg)
    peak = measured["peak_memory"]
    assert error(plan["peak"], peak) <= BOUND, f"predicted {plan['peak'] / 2**20:.0f} MiB, measured {peak / 2**20:.0f}"
    assert error(plan["peak"] - plan["parts"]["checkpoint file pages"], peak) > BOUND
