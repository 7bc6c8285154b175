"""DPO throughput: tunesmith DPO (padding-free preference batches) vs TRL DPOTrainer as users write it.

Not a test. Same locally built model, same variable-length preference pairs, same LoRA settings, optimizer,
seed and number of steps, fp32 on CPU, run one after another in this process in the order A B B A (the
machine may be shared). Prints real (non-pad) tokens/s, peak RSS during each run, the mean training loss of
the last steps, the last logged reward accuracy, and held-out preference accuracy (policy log-prob of chosen >
rejected) for both, and the ratio of real tokens/s.

    python bench/dpo_throughput.py [--steps 20] [--batch 8] [--layers 6] [--hidden 384]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TUNESMITH_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from sft_throughput import WORDS, CountingCollator, PeakRSS, lora  # noqa: E402

MAX_LENGTH = 256
LEARNING_RATE = 5e-5


def _words(rng: random.Random, mean: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(2, min(int(rng.lognormvariate(math.log(mean), 0.6)), 100))))


def make_pairs(n: int, seed: int) -> list[dict]:
    """Prompts and answers of varying length (log-normal): chosen and rejected differ in length as real pairs do."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = [{"role": "user", "content": _words(rng, 24) + "?"}]
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": _words(rng, 30) + "."}],
                "rejected": [{"role": "assistant", "content": _words(rng, 22) + "."}],
            }
        )
    return rows


def run_tunesmith(model_dir: Path, train_file: Path, work: Path, args) -> dict:
    from tunesmith.config import load_config
    from tunesmith.train.api import train

    config = load_config(
        data={
            "run": {"name": "bench", "output_dir": str(work / "runs"), "seed": 0, "overwrite": True},
            "model": {"name_or_path": str(model_dir)},
            "data": {
                "sources": [{"path": str(train_file)}],
                "max_length": MAX_LENGTH,
                "split": {"val": 0.0, "test": 0.0},
            },
            "method": "dpo",
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
            "train": {
                "max_steps": args.steps,
                "batch_size": args.batch,
                "grad_accum": 1,
                "learning_rate": LEARNING_RATE,
                "lr_scheduler": "linear",
                "logging_steps": 1,
                "save_steps": 10**6,
                "warmup_ratio": 0.0,
            },
            "tracking": {"report_to": ["none"]},
        }
    )
    result = train(config)
    history = result.run_dir / "metrics.jsonl"
    logs = [json.loads(line) for line in history.read_text().splitlines()]
    return {"model": result.model, "tokens": result.tokens, "seconds": result.train_seconds, "logs": logs}


def run_trl(model_dir: Path, rows: list[dict], work: Path, args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1,
        max_steps=args.steps,
        learning_rate=LEARNING_RATE,
        seed=0,
        data_seed=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        dataloader_pin_memory=False,
        max_length=MAX_LENGTH,
        warmup_steps=0.0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=lora(),
    )
    trainer.data_collator = counter = CountingCollator(trainer.data_collator)
    out = trainer.train()
    logs = [
        {"loss": r["loss"], "rewards/accuracies": r.get("rewards/accuracies")}
        for r in trainer.state.log_history
        if "loss" in r
    ]
    return {"model": trainer.model, "tokens": counter.tokens, "seconds": out.metrics["train_runtime"], "logs": logs}


def held_out_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    from tunesmith.eval.preference import preference_scores

    return preference_scores(model, tokenizer, pairs, MAX_LENGTH)["preference_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="Optimizer steps per contender.")
    parser.add_argument("--batch", type=int, default=8, help="Pairs per step.")
    parser.add_argument("--layers", type=int, default=6, help="Layers of the bench model.")
    parser.add_argument("--hidden", type=int, default=384, help="Hidden size of the bench model.")
    args = parser.parse_args()

    from tunesmith.model.load import load_tokenizer
    from tunesmith.model.tiny import build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="dpo_bench_"))
    rows, held = make_pairs(args.steps * args.batch, seed=0), make_pairs(48, seed=1)
    texts = [m["content"] for r in rows[:200] for k in ("prompt", "chosen", "rejected") for m in r[k]]
    model_dir = build_tiny_model(
        "llama", work / "model", texts, vocab_size=8192, layers=args.layers, hidden=args.hidden, heads=6, seed=0
    )
    tokenizer = load_tokenizer(str(model_dir))
    train_file = work / "pairs.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(
        f"model: llama {args.layers}x{args.hidden}; threads {torch.get_num_threads()}; {len(rows)} pairs, "
        f"{args.steps} steps x {args.batch} pairs, LoRA r16 all-linear, fp32 CPU"
    )

    contenders = [
        ("tunesmith DPO (padding-free)", run_tunesmith, train_file),
        ("TRL DPOTrainer (as users write it)", run_trl, rows),
    ]
    results = {name: {"runs": [], "rss": 0.0} for name, _, _ in contenders}
    for name, fn, data in contenders + contenders[::-1]:  # A B B A: both see early and late machine load
        torch.manual_seed(0)
        with PeakRSS() as rss:
            out = fn(model_dir, data, work, args)
        r = results[name]
        r["runs"].append(out["tokens"] / out["seconds"])
        r["rss"] = max(r["rss"], rss.peak / 2**20)
        losses = [x["loss"] for x in out["logs"] if x.get("loss") is not None]
        r["loss"] = sum(losses[-5:]) / len(losses[-5:])
        r["reward_acc"] = next(
            (x["rewards/accuracies"] for x in reversed(out["logs"]) if x.get("rewards/accuracies") is not None),
            float("nan"),
        )
        r["held_out_acc"] = held_out_accuracy(
            out["model"],
            tokenizer,
            [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in held],
        )
        print(
            f"{name}: {out['tokens']} real tokens in {out['seconds']:.1f} s = {r['runs'][-1]:,.0f} tokens/s", flush=True
        )
    _print_table(results)


def _print_table(results: dict) -> None:
    names = list(results)
    trl = max(results[names[1]]["runs"])
    print(
        "\n| run | real tokens/s (best of 2) | vs TRL | peak RSS MiB | train loss (last 5 steps) | reward accuracy (last step) | held-out preference accuracy |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        tps = max(r["runs"])
        print(
            f"| {name} | {tps:,.0f} | {tps / trl:.2f}x | {r['rss']:,.0f} | {r['loss']:.4f} | {r['reward_acc']:.3f} | {r['held_out_acc']:.3f} |"
        )
    ours, theirs = results[names[0]]["loss"], results[names[1]]["loss"]
    print(
        f"\ntrain loss difference tunesmith vs TRL: {100 * (ours - theirs) / theirs:+.2f}% (the two see the pairs in different orders)"
    )


if __name__ == "__main__":
    main()
