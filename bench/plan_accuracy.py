"""Plan accuracy: `tunesmith plan`'s predicted peak memory and seconds per step vs what training measures.

Not a test. Each configuration trains in its own fresh process through `tunesmith train`, which plans the
run first (plan.json) and records the measured peak RSS and mean seconds per step (manifest.json,
`measured`). Right after training, the same process (same threads, same load) calibrates the time probes
afresh (an empty $TUNESMITH_CACHE) and plans the seconds per step: predicted and measured back to back. The
calibration runs after the steps so that its allocations cannot raise the measured peak memory.

This machine is shared: the load average is read before and after each configuration; a configuration
starts only once the 1-minute load is under --max-load (waiting up to --wait seconds), and one measured
under a higher load is run again (--retries). The load is printed with each row. With --cpu-clock every
run uses one thread and both the probes and the steps are timed in process CPU seconds, which equal the wall
seconds on an idle core and which other processes cannot inflate: the check of the time model on a busy
machine.

Models are `tiny:llama` built locally at ~10M and ~100M parameters; data are chat rows of log-normal length
(mean ~150 tokens, long tail past 512), and for DPO TRL's conversational prompt / chosen / rejected rows.

    python bench/plan_accuracy.py [--only NAME ...] [--steps-small 6] [--steps-large 3] [--max-load 2.5] [--cpu-clock] [--lean]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
SMALL = {"layers": 8, "hidden": 320, "heads": 4, "vocab_size": 8192}  # ~10M parameters
LARGE = {"layers": 14, "hidden": 896, "heads": 14, "vocab_size": 8192}  # ~100M parameters


def word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))


def chat_rows(n: int, seed: int) -> list[dict]:
    """User/assistant chats whose lengths are log-normal (median ~50 words, tail past 400)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = min(int(rng.lognormvariate(math.log(50), 0.8)), 700)
        q = max(3, words // 3)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": " ".join(word(rng) for _ in range(q)) + "?"},
                    {"role": "assistant", "content": " ".join(word(rng) for _ in range(max(2, words - q))) + "."},
                ]
            }
        )
    return rows


def pair_rows(n: int, seed: int) -> list[dict]:
    """TRL's conversational preference rows (prompt / chosen / rejected message lists), log-normal lengths."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = min(int(rng.lognormvariate(math.log(40), 0.7)), 400)
        prompt = " ".join(word(rng) for _ in range(max(3, words // 3))) + "?"

        def answer():
            return " ".join(word(rng) for _ in range(max(2, words - words // 3 + rng.randint(-5, 5)))) + "."

        rows.append(
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": answer()}],
                "rejected": [{"role": "assistant", "content": answer()}],
            }
        )
    return rows


def configs(data: Path, out: Path, steps_small: int, steps_large: int, lean: bool) -> dict[str, dict]:
    def sft(name, shape, mode, max_length, steps, **train):
        return {
            "run": {"name": name, "output_dir": str(out), "seed": 0, "overwrite": True},
            "model": {"name_or_path": "tiny:llama", "tiny": shape},
            "data": {
                "sources": [{"path": str(data / "chat.jsonl")}],
                "max_length": max_length,
                "split": {"val": 0.0, "test": 0.0},
            },
            "train": {
                "mode": mode,
                "max_steps": steps,
                "batch_size": 8,
                "grad_accum": 1,
                "logging_steps": 1,
                "save_steps": 10**6,
                "lean_memory": lean,
                **train,
            },
            "tracking": {"report_to": ["none"]},
        }

    grpo = sft("grpo-lora-10m", SMALL, "lora", 512, steps_small)
    grpo.update(
        method="grpo",
        grpo={
            "num_generations": 4,
            "max_completion_length": 32,
            "rewards": [{"name": "length", "options": {"max": 64}}],
        },
    )
    dpo = sft("dpo-lora-10m-512", SMALL, "lora", 512, steps_small)
    dpo.update(method="dpo")
    dpo["data"]["sources"] = [{"path": str(data / "pairs.jsonl")}]
    return {
        "full-10m-256": sft("full-10m-256", SMALL, "full", 256, steps_small),
        "lora-10m-256": sft("lora-10m-256", SMALL, "lora", 256, steps_small),
        "qlora-10m-256": sft("qlora-10m-256", SMALL, "qlora", 256, steps_small),
        "lora-10m-1024": sft("lora-10m-1024", SMALL, "lora", 1024, steps_small),
        "full-100m-256": sft("full-100m-256", LARGE, "full", 256, steps_large),
        "lora-100m-1024": sft("lora-100m-1024", LARGE, "lora", 1024, steps_large),
        "qlora-100m-1024": sft("qlora-100m-1024", LARGE, "qlora", 1024, steps_large),
        "lora-100m-padded-512": sft("lora-100m-padded-512", LARGE, "lora", 512, steps_large, batching="padded"),
        "dpo-lora-10m-512": dpo,
        "grpo-lora-10m": grpo,
    }


def child(config_file: str) -> None:
    """Train one config (plan first, inside `train`), then calibrate afresh in this process and plan the time;
    print predicted and measured numbers with the load averages as JSON."""
    from tunesmith.config.load import load_config
    from tunesmith.plan.build import make_plan
    from tunesmith.train.api import train

    load_before = os.getloadavg()[0]
    result = train(load_config(config_file))
    timed = make_plan(load_config(config_file), device="cpu", fresh_calibration=True)  # calibrated now
    plan = json.loads((result.run_dir / "plan.json").read_text())
    plan["seconds_per_step"] = timed.seconds_per_step
    plan["time_parts"] = timed.time
    plan["calibration"] = timed.calibration
    measured = json.loads((result.run_dir / "manifest.json").read_text())["measured"]
    load = [load_before, os.getloadavg()[0]]
    print("RESULT " + json.dumps({"plan": plan, "measured": measured, "load": load}))


def run_one(name: str, config: dict, work: Path, max_load: float, wait: float, retries: int) -> dict:
    config_file = work / f"{name}.json"
    config_file.write_text(json.dumps(config))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TUNESMITH_NO_PROGRESS": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    for attempt in range(retries + 1):
        wait_for_quiet(max_load, wait)
        env["TUNESMITH_CACHE"] = tempfile.mkdtemp(prefix="plan-bench-cache-")
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(config_file)], capture_output=True, text=True, env=env
        )
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
        result = json.loads(line[len("RESULT ") :])
        result["attempts"] = attempt + 1
        shutil.rmtree(Path(config["run"]["output_dir"]) / name, ignore_errors=True)  # a 108M run leaves ~1 GB
        if max(result["load"]) <= max_load:
            break
    return result


def wait_for_quiet(max_load: float, wait: float) -> None:
    """Wait (up to `wait` seconds) until the 1-minute load average is under max_load."""
    deadline = time.monotonic() + wait
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(10)


def row(name: str, result: dict) -> str:
    plan, measured = result["plan"], result["measured"]
    mib = 2**20
    p_mem, m_mem = plan["peak"], measured["peak_memory"]
    p_s, m_s = plan["seconds_per_step"], measured["seconds_per_step"]
    load = "/".join(f"{x:.1f}" for x in result["load"])
    return (
        f"| {name} | {p_mem / mib:,.0f} | {m_mem / mib:,.0f} | {p_mem / m_mem - 1:+.1%} "
        f"| {p_s:.3f} | {m_s:.3f} | {p_s / m_s - 1:+.1%} | {load} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="*", help="Run only these configurations.")
    parser.add_argument("--steps-small", type=int, default=6, help="Steps of the ~10M runs.")
    parser.add_argument("--steps-large", type=int, default=3, help="Steps of the ~100M runs.")
    parser.add_argument("--max-load", type=float, default=2.5, help="Start and accept a run under this load.")
    parser.add_argument("--wait", type=float, default=300, help="Seconds to wait for the load to drop.")
    parser.add_argument("--retries", type=int, default=1, help="Reruns of a run measured under a higher load.")
    parser.add_argument(
        "--cpu-clock",
        action="store_true",
        help="One thread, CPU seconds for probes and steps (= wall seconds on an idle core; load-proof).",
    )
    parser.add_argument(
        "--lean",
        action="store_true",
        help="train.lean_memory on: freed memory back to the OS at once, so the peak RSS is the live tensors planned.",
    )
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    if args.cpu_clock:  # children inherit both
        os.environ.update(TUNESMITH_PLAN_CLOCK="cpu", OMP_NUM_THREADS="1")
    work = Path(tempfile.mkdtemp(prefix="plan_bench_"))
    (work / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat_rows(400, seed=0)))
    (work / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pair_rows(300, seed=0)))
    chosen = configs(work, work / "runs", args.steps_small, args.steps_large, args.lean)
    print(
        "| config | predicted peak MiB | measured peak RSS MiB | error | predicted s/step | measured s/step | error "
        "| load before/after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    results = {}
    for name, config in chosen.items():
        if args.only and name not in args.only:
            continue
        results[name] = run_one(name, config, work, args.max_load, args.wait, args.retries)
        print(row(name, results[name]), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
