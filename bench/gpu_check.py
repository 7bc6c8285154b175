"""GPU check: the CUDA paths of tunesmith, side by side with TRL, on a ~0.5B Qwen2-shaped model built here.

Not a test. Needs no hub: the model (Qwen2.5-0.5B's shape: 24 x 896, 14 heads / 2 KV heads, FFN 4864,
vocabulary 151,936, tied embeddings) gets random weights and a small BPE tokenizer trained on the bench text.
Runs, in this order, each timed on real (non-pad) tokens with the peak GPU memory:
  1. LoRA SFT, tunesmith defaults (bf16, padding-free, per-example attention, activation checkpointing)
  2. LoRA SFT, TRL SFTTrainer as users write it (dtype bf16, SFTConfig defaults, peft_config)
  3. QLoRA SFT, tunesmith defaults (NF4 + double quant, bf16 compute, paged 8-bit AdamW)
  4. QLoRA SFT, TRL SFTTrainer with a BitsAndBytesConfig as users write it
  5. a short GRPO run (tunesmith on TRL's GRPOTrainer)
  6. export of the LoRA run: merge, GGUF f16, parity check in llama.cpp
then prints a table with tokens/s, peak memory and the tunesmith / TRL ratios. About 3-5 minutes on one
large GPU.

    python bench/gpu_check.py              # CUDA
    python bench/gpu_check.py --dry-run    # the same code path on CPU with a tiny model (CI runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TUNESMITH_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from sft_throughput import CountingCollator, make_rows  # noqa: E402

# The real shape (GPU) and a tiny one for --dry-run. The model's vocabulary is larger than the tokenizer's in
# both (as in Qwen2.5, whose embedding has 151,936 rows for 151,665 tokens), so --dry-run exercises that too.
SHAPES = {
    "qwen2.5-0.5b": dict(hidden=896, layers=24, heads=14, kv_heads=2, ffn=4864, vocab=151936, tokenizer_vocab=4096),
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=1280, tokenizer_vocab=1024),
}


@dataclass
class Plan:
    """What one check run does: the model shape, the data size and the steps of each stage."""

    dry_run: bool
    shape: dict
    device: str
    sft_steps: int
    batch: int
    max_length: int
    grpo_steps: int
    grpo_generations: int
    grpo_completion: int
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gpu_check_")))


def make_plan(dry_run: bool, work: str | None) -> Plan:
    if dry_run:
        plan = Plan(
            True,
            SHAPES["tiny"],
            "cpu",
            sft_steps=3,
            batch=4,
            max_length=128,
            grpo_steps=2,
            grpo_generations=4,
            grpo_completion=8,
        )
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA GPU visible: run with --dry-run on a CPU")
        plan = Plan(
            False,
            SHAPES["qwen2.5-0.5b"],
            "cuda",
            sft_steps=30,
            batch=8,
            max_length=512,
            grpo_steps=5,
            grpo_generations=8,
            grpo_completion=64,
        )
    if work:
        plan.work = Path(work)
        plan.work.mkdir(parents=True, exist_ok=True)
    return plan


def build_model(plan: Plan, texts: list[str]) -> Path:
    """A Qwen2-shaped model with random weights and a BPE tokenizer trained on `texts`, saved as an HF folder."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from tunesmith.model.tiny import build_tokenizer

    s, out = plan.shape, plan.work / "model"
    tokenizer = build_tokenizer(texts, s["tokenizer_vocab"])
    config = Qwen2Config(
        vocab_size=s["vocab"],
        hidden_size=s["hidden"],
        intermediate_size=s["ffn"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        rms_norm_eps=1e-6,
    )
    torch.manual_seed(0)
    dtype = torch.bfloat16 if plan.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(
        f"model: Qwen2-shaped {s['layers']} x {s['hidden']}, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, {dtype}",
        flush=True,
    )
    return out


class Meter:
    """Wall time and peak memory of a block: GPU memory on CUDA, resident memory on CPU."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            from tunesmith.peak_memory import peak_rss_bytes

            self.peak_mib = peak_rss_bytes() / 2**20
        self.seconds = time.perf_counter() - self.started


def tunesmith_sft(plan: Plan, model_dir: Path, train_file: Path, mode: str) -> dict:
    from tunesmith.config import load_config
    from tunesmith.train.api import train

    config = load_config(
        data={
            "run": {"name": f"sft-{mode}", "output_dir": str(plan.work / "runs"), "seed": 0, "overwrite": True},
            "model": {"name_or_path": str(model_dir)},
            "data": {
                "sources": [{"path": str(train_file)}],
                "max_length": plan.max_length,
                "split": {"val": 0.0, "test": 0.05},
            },
            "train": {
                "mode": mode,
                "max_steps": plan.sft_steps,
                "batch_size": plan.batch,
                "grad_accum": 1,
                "logging_steps": 5,
                "save_steps": 10**6,
                "device": plan.device,
            },
            "export": {"gguf": ["f16"], "verify_prompts": 2, "verify_tokens": 8},
            "tracking": {"report_to": ["none"]},
        }
    )
    with Meter(plan.device) as meter:
        result = train(config)
    return {
        "tokens": result.tokens,
        "seconds": result.train_seconds,
        "peak_mib": meter.peak_mib,
        "run_dir": result.run_dir,
    }


def trl_sft(plan: Plan, model_dir: Path, rows: list[dict], mode: str) -> dict:
    """TRL's SFTTrainer as its docs show it: a model, an SFTConfig, a peft_config and a messages dataset."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    cpu = plan.device == "cpu"
    dtype = torch.float32 if cpu else torch.bfloat16
    load = {"dtype": dtype}
    if mode == "qlora":
        load["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
    model = AutoModelForCausalLM.from_pretrained(model_dir, **load)
    cpu_settings = (
        {"use_cpu": True, "bf16": False, "dataloader_pin_memory": False} if cpu else {}
    )  # TRL refuses bf16 on CPU
    args = SFTConfig(
        output_dir=str(plan.work / f"trl-{mode}"),
        per_device_train_batch_size=plan.batch,
        gradient_accumulation_steps=1,
        max_steps=plan.sft_steps,
        learning_rate=2e-4,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        max_length=plan.max_length,
        seed=0,
        **cpu_settings,
    )
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        peft_config=peft,
    )
    trainer.data_collator = counter = CountingCollator(trainer.data_collator)
    with Meter(plan.device) as meter:
        out = trainer.train()
    return {"tokens": counter.tokens, "seconds": out.metrics["train_runtime"], "peak_mib": meter.peak_mib}


def tunesmith_grpo(plan: Plan, model_dir: Path, rows: list[dict]) -> dict:
    from tunesmith.config import load_config
    from tunesmith.train.api import train

    data = plan.work / "grpo.jsonl"
    data.write_text(
        "".join(json.dumps({"question": r["messages"][0]["content"], "answer": "yes"}) + "\n" for r in rows)
    )
    config = load_config(
        data={
            "run": {"name": "grpo", "output_dir": str(plan.work / "runs"), "seed": 0, "overwrite": True},
            "model": {"name_or_path": str(model_dir)},
            "method": "grpo",
            "data": {
                "sources": [{"path": str(data)}],
                "max_length": plan.max_length,
                "split": {"val": 0.0, "test": 0.0},
            },
            "grpo": {
                "num_generations": plan.grpo_generations,
                "max_completion_length": plan.grpo_completion,
                "rewards": [{"name": "length", "options": {"min": 5, "max": 40}}],
            },
            "train": {
                "mode": "lora",
                "max_steps": plan.grpo_steps,
                "batch_size": plan.grpo_generations,
                "grad_accum": 1,
                "learning_rate": 1e-5,
                "logging_steps": 1,
                "save_steps": 10**6,
                "device": plan.device,
            },
            "tracking": {"report_to": ["none"]},
        }
    )
    with Meter(plan.device) as meter:
        result = train(config)
    return {"steps": result.steps, "seconds": meter.seconds, "peak_mib": meter.peak_mib}


def export(run_dir: Path) -> dict:
    from tunesmith.export.export_run import export_run

    with Meter("cpu") as meter:
        result = export_run(run_dir, gguf_types=["f16"])
    parity = {kind: p.verdict for kind, p in result.parity.items()}
    return {
        "seconds": meter.seconds,
        "gguf": sorted(str(p.name) for p in result.gguf_files.values()),
        "parity_verdict": parity,
    }


def attempt(name: str, fn, *args) -> dict | None:
    """Run one stage; a failure is printed with its traceback and the other stages still run."""
    print(f"== {name}", flush=True)
    try:
        out = fn(*args)
    except Exception:  # noqa: BLE001 - a check script reports every failing stage, then exits non-zero
        traceback.print_exc()
        print(f"FAILED: {name}", flush=True)
        return None
    shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items() if k != "run_dir"}
    print(f"   {shown}", flush=True)
    return out


def print_table(results: dict) -> None:
    memory = "peak GPU memory MiB" if torch.cuda.is_available() else "peak RSS MiB (process so far; CPU dry run)"
    print(f"\n| run | real tokens/s | {memory} | tokens/s vs TRL | memory vs TRL |")
    print("|---|---|---|---|---|")
    for mode in ("lora", "qlora"):
        ours, theirs = results.get(f"tunesmith {mode}"), results.get(f"TRL {mode}")
        for name, r in ((f"tunesmith {mode}", ours), (f"TRL SFTTrainer {mode}", theirs)):
            if r is None:
                print(f"| {name} | failed | | | |")
                continue
            tps = r["tokens"] / r["seconds"]
            ratio = memory = ""
            if ours and theirs and r is ours:
                ratio = f"{tps / (theirs['tokens'] / theirs['seconds']):.2f}x"
                memory = f"{r['peak_mib'] / theirs['peak_mib']:.2f}x"
            print(f"| {name} | {tps:,.0f} | {r['peak_mib']:,.0f} | {ratio} | {memory} |")
    grpo = results.get("tunesmith grpo")
    if grpo:
        print(
            f"\nGRPO: {grpo['steps']} steps in {grpo['seconds']:.1f} s ({grpo['steps'] / grpo['seconds']:.2f} steps/s), peak {grpo['peak_mib']:,.0f} MiB"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="Tiny model on CPU, a few steps: checks the code path in seconds."
    )
    parser.add_argument("--work", help="Folder for the model, data and runs (default: a new temporary folder).")
    args = parser.parse_args(argv)
    plan = make_plan(args.dry_run, args.work)
    started = time.perf_counter()
    if plan.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    rows = make_rows(plan.sft_steps * plan.batch + 64, seed=0, median=60, sigma=0.6, cap=400)
    train_file = plan.work / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model_dir = build_model(plan, [m["content"] for r in rows[:300] for m in r["messages"]])
    results = {
        "tunesmith lora": attempt("LoRA SFT, tunesmith defaults", tunesmith_sft, plan, model_dir, train_file, "lora"),
        "TRL lora": attempt("LoRA SFT, TRL SFTTrainer", trl_sft, plan, model_dir, rows, "lora"),
        "tunesmith qlora": attempt(
            "QLoRA SFT, tunesmith defaults", tunesmith_sft, plan, model_dir, train_file, "qlora"
        ),
        "TRL qlora": attempt("QLoRA SFT, TRL SFTTrainer", trl_sft, plan, model_dir, rows, "qlora"),
        "tunesmith grpo": attempt("GRPO, tunesmith", tunesmith_grpo, plan, model_dir, rows[:32]),
    }
    lora_run = results["tunesmith lora"]
    results["export"] = attempt("export: merge, GGUF f16, parity", export, lora_run["run_dir"]) if lora_run else None
    print_table(results)
    failed = [name for name, r in results.items() if r is None]
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; "
        + (f"FAILED: {', '.join(failed)}" if failed else "all stages ran")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
