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
output layer). On this 2-core VM a process's speed moves by 10-25% from one process to the next, the plan's as
much as the run's (GRPO runs of one config measured 0.42-0.69 s/step on an idle machine; single calibrations
0.38-0.72 s/step), so each time check trains once and calibrates three times (GRPO five; the median), and while
the prediction misses, trains and calibrates again, up to three times, the bound applying to the pooled numbers
(the mean of the runs, the median of all calibrations): pooling converges on a biased plan's bias, so a wrong
plan still misses. Planted bugs prove each check can fail: the full fine-tune's memory without the AdamW
states, the QLoRA memory without the checkpoint file pages, the time without the layers' backward, and GRPO's
time without generation all fall outside the bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.unit.test_plan import write_chats
from tunesmith.plan.probe import CLOCK_ENV

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


def cli(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": str(REPO / "src"),
        "TUNESMITH_NO_PROGRESS": "1",
        "TUNESMITH_CACHE": str(tmp_path / "cache"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", *args], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def train_and_plan(
    tmp_path, cfg: dict, calibrations: int = 1, env: dict | None = None
) -> tuple[dict, dict, list[dict]]:
    """(plan.json of the run, measured numbers, `plan --json` of `calibrations` fresh calibrations right after
    training)."""
    path = tmp_path / f"{cfg['run']['name']}.json"
    path.write_text(json.dumps(cfg))
    cli(tmp_path, "train", str(path), env=env)
    run = tmp_path / "runs" / cfg["run"]["name"]
    measured = json.loads((run / "manifest.json").read_text())["measured"]
    plans = []
    for _ in range(calibrations):
        (tmp_path / "cache" / "plan" / "calibration.json").unlink(missing_ok=True)  # calibrate now, not earlier
        plans.append(json.loads(cli(tmp_path, "plan", str(path), "--json", env=env).stdout))
    return json.loads((run / "plan.json").read_text()), measured, plans


def measure_time(tmp_path, cfg: dict, calibrations: int = 3, env: dict | None = None) -> tuple[dict, float]:
    """(the calibration with the median seconds per step, the mean measured seconds per step), pooled over up
    to three attempts: each trains once and calibrates `calibrations` times; another attempt is made only while
    the pooled prediction misses the bound (a biased prediction still misses: pooling converges on its bias)."""
    measured, plans = [], []
    for _ in range(3):
        _, run, calibrated = train_and_plan(tmp_path, cfg, calibrations, env)
        measured.append(run)
        plans += calibrated
        timed, seconds = pooled([m["seconds_per_step"] for m in measured], plans)
        if error(timed["seconds_per_step"], seconds) <= BOUND:
            break
    assert all(p["calibration"]["threads"] == m["threads"] for p in plans for m in measured)  # as training runs
    return timed, seconds


def pooled(runs: list[float], plans: list[dict]) -> tuple[dict, float]:
    """(the plan with the median seconds per step, the mean of the runs' seconds per step)."""
    return sorted(plans, key=lambda p: p["seconds_per_step"])[len(plans) // 2], sum(runs) / len(runs)


def test_pooling_keeps_a_biased_plan_missing():
    """Planted: a plan 30% over the runs. Its second attempt alone lands inside the bound (a slow run, a fast
    calibration), which best-of-attempts would accept; the pooled numbers still miss."""
    runs = [0.45, 0.55, 0.50]
    plans = [{"seconds_per_step": s} for s in (0.62, 0.65, 0.68, 0.585, 0.60, 0.70, 0.63, 0.66, 0.67)]
    second, seconds = pooled(runs[1:2], plans[3:6])
    assert error(second["seconds_per_step"], seconds) <= BOUND
    timed, seconds = pooled(runs, plans)
    assert error(timed["seconds_per_step"], seconds) > BOUND


def error(predicted: float, measured: float) -> float:
    return abs(predicted / measured - 1)


FULL = {"layers": 1, "hidden": 2048, "heads": 16}


def test_full_fine_tune_memory_within_20_percent_and_without_adamw_states_fails(tmp_path):
    plan, measured, _ = train_and_plan(tmp_path, config(tmp_path, "full", "full", FULL))
    peak = measured["peak_memory"]
    assert error(plan["peak"], peak) <= BOUND, f"predicted {plan['peak'] / 2**20:.0f} MiB, measured {peak / 2**20:.0f}"
    assert error(plan["peak"] - plan["parts"]["optimizer"], peak) > BOUND  # planted: no AdamW states


def test_full_fine_tune_time_within_20_percent_and_without_backward_fails(tmp_path):
    timed, seconds = measure_time(tmp_path, config(tmp_path, "full", "full", FULL, steps=8, lean=False))
    predicted = timed["seconds_per_step"]
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
    timed, seconds = measure_time(tmp_path, config(tmp_path, "lora-time", "lora", LORA, steps=30, lean=False))
    predicted = timed["seconds_per_step"]
    assert error(predicted, seconds) <= BOUND, f"predicted {predicted:.3f} s/step, measured {seconds:.3f}"


LORA = {"layers": 4, "hidden": 512, "heads": 8}


def grpo_config(tmp_path, name: str, lean: bool, steps: int = 5) -> dict:
    cfg = config(tmp_path, name, "lora", {**GRPO_MODEL, "vocab_size": 8192}, steps=steps, lean=lean)
    cfg["method"] = "grpo"
    cfg["grpo"] = {"num_generations": 4, "max_completion_length": 24, "rewards": [{"name": "length"}]}
    return cfg


GRPO_MODEL = {"layers": 4, "hidden": 256, "heads": 4}


def test_grpo_memory_and_time_within_20_percent_and_without_generation_fails(tmp_path):
    """GRPO: TRL's fused output layer (its tiles, timed with its own function), generation in training mode,
    the prompts its RepeatSampler draws, left-padded to the longest of each step.

    Time on one thread in CPU seconds (TUNESMITH_PLAN_CLOCK=cpu), which another process cannot inflate: a
    step is thousands of generation calls of a few milliseconds, and with torch's two threads on a machine
    where another process kept one core busy, the runs slowed 4x and the calibrations' medians caught the
    calls that ran alone (a training run and three calibrations: 24-40% under the measured step, six times;
    on one thread in CPU seconds, +6% and +13%). The two-thread wall-clock GRPO row is in the table of
    bench/plan_accuracy.py (docs/plan.md)."""
    plan, measured, _ = train_and_plan(tmp_path, grpo_config(tmp_path, "grpo", lean=True))
    peak = measured["peak_memory"]
    assert error(plan["peak"], peak) <= BOUND, f"predicted {plan['peak'] / 2**20:.0f} MiB, measured {peak / 2**20:.0f}"
    cfg = grpo_config(tmp_path, "grpo-time", lean=False, steps=10)
    timed, seconds = measure_time(tmp_path, cfg, calibrations=5, env={CLOCK_ENV: "cpu", "OMP_NUM_THREADS": "1"})
    predicted = timed["seconds_per_step"]
    assert timed["calibration"]["threads"] == 1
    assert error(predicted, seconds) <= BOUND, f"predicted {predicted:.3f} s/step, measured {seconds:.3f}"
    assert error(predicted - timed["time"]["generation"], seconds) > BOUND  # planted: generation left out


def test_qlora_memory_within_20_percent_and_without_checkpoint_pages_fails(tmp_path):
    pytest.importorskip("bitsandbytes")
    cfg = config(tmp_path, "qlora", "qlora", {"layers": 1, "hidden": 2048, "heads": 16}, steps=2)
    plan, measured, _ = train_and_plan(tmp_path, cfg)
    peak = measured["peak_memory"]
    assert error(plan["peak"], peak) <= BOUND, f"predicted {plan['peak'] / 2**20:.0f} MiB, measured {peak / 2**20:.0f}"
    assert error(plan["peak"] - plan["parts"]["checkpoint file pages"], peak) > BOUND
