"""Helpers that build a finished run directory without training (tiny base + random LoRA adapter)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tunesmith.config.load import load_config, save_config
from tunesmith.data.synth import intent_dataset
from tunesmith.run_dir import RunDir, write_jsonl


def fake_metrics(steps: int = 20) -> list[dict]:
    """metrics.jsonl rows shaped like the trainer's: train loss/lr/tokens per second, val loss every 5 steps."""
    rows = []
    for step in range(1, steps + 1):
        rows.append(
            {
                "step": step,
                "epoch": step / steps,
                "loss": 3.0 * math.exp(-step / 8) + 0.5,
                "lr": 1e-3 * (1 - step / steps),
                "tokens_per_s": 900.0 + step,
            }
        )
        if step % 5 == 0:
            rows.append({"step": step, "epoch": step / steps, "eval_loss": 3.2 * math.exp(-step / 9) + 0.6})
    return rows


def make_run_dir(
    root: Path, base_model: Path, metrics: list[str] | None = None, n_test: int = 6, seed: int = 0
) -> Path:
    """A run directory with config.yaml, manifest.json, final/ (peft adapter + tokenizer), data/, metrics.jsonl."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = RunDir.of(root)
    root.mkdir(parents=True, exist_ok=True)
    config = load_config(
        data={
            "run": {"name": root.name, "output_dir": str(root.parent), "seed": seed},
            "model": {"name_or_path": str(base_model)},
            "eval": {"metrics": metrics or ["loss", "exact_match", "json"], "max_new_tokens": 12, "batch_size": 4},
        }
    )
    save_config(config, run.config_file)
    run.manifest.write_text(json.dumps({"base_model": str(base_model)}))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.save_pretrained(run.final)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(run.final)
    rows = intent_dataset(40 + n_test, seed=seed)
    write_jsonl(run.split_file("train"), rows[:30])
    write_jsonl(run.split_file("val"), rows[30:40])
    write_jsonl(run.split_file("test"), rows[40:])
    write_jsonl(run.metrics, fake_metrics())
    return root
