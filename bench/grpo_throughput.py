"""GRPO steps/s: tunesmith (method: grpo) vs TRL's GRPOTrainer as users write it, same settings, one process.

Not a test. The same locally built model, prompts, reward (tunesmith's built-in `length`, the same function
object on both sides), LoRA r16 on all linear layers, batch 8 = 2 prompts x 4 generations, 32 completion
tokens, temperature 1, beta 0, the same number of steps. Run in the order A B B A (the machine may be shared);
only the training loop is timed (trainer.train()), model loading and data preparation are not. On CPU,
generation dominates a GRPO step, so both spend most of their time in transformers' generate.

    python bench/grpo_throughput.py [--steps 6] [--layers 4] [--hidden 256]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TUNESMITH_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

WORDS = "what is the time weather price of a ticket to paris tomorrow please tell me how many days until friday".split()
GENERATIONS, BATCH, COMPLETION = 4, 8, 32
LENGTH = {"min": 10, "max": 60}


def prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) + "?" for _ in range(n)]


def run_tunesmith(model_dir: Path, questions: list[str], work: Path, steps: int) -> float:
    from tunesmith.config import load_config
    from tunesmith.train.grpo import GRPOMethod

    data = work / "grpo.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": ""}) + "\n" for q in questions))
    config = load_config(
        data={
            "run": {"name": "grpo-bench", "output_dir": str(work / "runs"), "seed": 0, "overwrite": True},
            "model": {"name_or_path": str(model_dir)},
            "method": "grpo",
            "data": {"sources": [{"path": str(data)}], "split": {"val": 0.0, "test": 0.0}},
            "grpo": {
                "num_generations": GENERATIONS,
                "max_completion_length": COMPLETION,
                "beta": 0.0,
                "rewards": [{"name": "length", "options": LENGTH}],
            },
            "train": {
                "max_steps": steps,
                "batch_size": BATCH,
                "grad_accum": 1,
                "learning_rate": 1e-5,
                "logging_steps": 1,
                "save_steps": 10**6,
                "device": "cpu",
            },
            "tracking": {"report_to": ["none"]},
        }
    )
    method = GRPOMethod()
    ctx = method.prepare(config, resume=False)
    trainer = method.build_trainer(ctx)
    started = time.perf_counter()
    method.train(trainer, ctx)
    return trainer.state.global_step / (time.perf_counter() - started)


def run_trl(model_dir: Path, questions: list[str], work: Path, steps: int) -> float:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from tunesmith.config.schema import RewardConfig
    from tunesmith.rewards.build import build_reward, to_trl

    reward = to_trl(build_reward(RewardConfig(name="length", options=LENGTH)))
    args = GRPOConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=1,
        max_steps=steps,
        num_generations=GENERATIONS,
        max_completion_length=COMPLETION,
        temperature=1.0,
        beta=0.0,
        learning_rate=1e-5,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        use_cpu=True,
        bf16=False,
        dataloader_pin_memory=False,
    )
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in questions])
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        reward_funcs=[reward],
        args=args,
        train_dataset=rows,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    started = time.perf_counter()
    trainer.train()
    return trainer.state.global_step / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    from tunesmith.model.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="grpo_bench_"))
    questions = prompts(args.steps * BATCH // GENERATIONS * 2, seed=0)
    model_dir = build_tiny_model(
        "qwen2", work / "model", questions, vocab_size=2048, layers=args.layers, hidden=args.hidden, heads=4, seed=0
    )
    print(
        f"model: qwen2 {args.layers} x {args.hidden}; {args.steps} steps, batch {BATCH} = {BATCH // GENERATIONS} prompts "
        f"x {GENERATIONS} generations, {COMPLETION} completion tokens, LoRA r16; threads {torch.get_num_threads()}"
    )
    runs: dict[str, list[float]] = {"tunesmith": [], "TRL GRPOTrainer": []}
    order = [("tunesmith", run_tunesmith), ("TRL GRPOTrainer", run_trl)]
    for name, fn in order + order[::-1]:  # A B B A
        torch.manual_seed(0)
        runs[name].append(fn(model_dir, questions, work, args.steps))
        print(f"{name}: {runs[name][-1]:.3f} steps/s", flush=True)
    ours, theirs = max(runs["tunesmith"]), max(runs["TRL GRPOTrainer"])
    print(f"\nbest of 2: tunesmith {ours:.3f} steps/s, TRL {theirs:.3f} steps/s, ratio {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
