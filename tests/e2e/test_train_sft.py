"""End-to-end SFT on tiny local models and stories260K: loss falls, the right weights change, files are written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from tests.conftest import shared_path
from tunesmith.config import load_config
from tunesmith.run_dir import RunDir
from tunesmith.train.api import train

pytestmark = pytest.mark.slow


def write_chat_data(folder: Path, n: int = 48, seed: int = 0) -> Path:
    """Small addition Q&A chats (learnable in a few steps)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 40), rng.randint(1, 40)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} plus {b}?"},
                    {"role": "assistant", "content": f"The answer is {a + b}."},
                ]
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sft_config(tmp_path: Path, model: str, **train):
    data = write_chat_data(tmp_path)
    settings = dict(
        max_steps=12, batch_size=4, grad_accum=1, learning_rate=3e-3, logging_steps=1, save_steps=6, warmup_ratio=0.0
    )
    settings.update(train)
    raw = {
        "run": {"name": "t", "output_dir": str(tmp_path / "runs")},
        "model": {"name_or_path": model},
        "data": {"sources": [{"path": str(data)}], "max_length": 96, "split": {"val": 0.1, "test": 0.05}},
        "train": settings,
        "tracking": {"report_to": ["none"]},
    }
    return load_config(data=raw)


def first_last_loss(run_dir: Path) -> tuple[float, float]:
    losses = [
        json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in line
    ]
    return losses[0], losses[-1]


def initial_adapter(config, base_dir: str):
    """The adapter exactly as training initialised it (same seed), for before/after comparisons."""
    from transformers import set_seed

    from tunesmith.model.adapters import add_adapters
    from tunesmith.model.load import load_model

    set_seed(config.run.seed)
    return add_adapters(load_model(base_dir), config)


def test_lora_on_tiny_model_trains_adapter_only(tmp_path):
    config = sft_config(tmp_path, "tiny:qwen2")
    result = train(config)
    first, last = first_last_loss(result.run_dir)
    assert last < first - 0.3
    before = dict(initial_adapter(config, str(result.run_dir / "base_model")).named_parameters())
    after = dict(result.model.named_parameters())
    lora = [n for n in after if "lora_" in n]
    assert lora and all(not torch.equal(before[n], after[n]) for n in lora)
    assert all(torch.equal(before[n], after[n]) for n in after if "lora_" not in n)
    assert (result.final_dir / "adapter_config.json").exists() and (result.final_dir / "chat_template.jinja").exists()
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["base_model"] == str(result.run_dir / "base_model") and manifest["mode"] == "lora"
    assert manifest["data"]["train"]["rows"] == 41 and manifest["end_time"]
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == ["step-12", "step-6"]


def test_lora_on_stories260k(tmp_path):
    gguf = shared_path("models", "stories260K", "stories260K.gguf")
    config = sft_config(tmp_path, str(gguf), learning_rate=1e-2)
    config.model.chat_template = "simple"
    result = train(config)
    first, last = first_last_loss(result.run_dir)
    assert last < first - 0.3
    names = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert json.loads((result.run_dir / "manifest.json").read_text())["base_model"] == str(gguf)


def test_full_fine_tune_changes_every_weight(tmp_path):
    config = sft_config(tmp_path, "tiny:llama", mode="full", max_steps=6, learning_rate=1e-3)
    result = train(config)
    first, last = first_last_loss(result.run_dir)
    assert last < first
    from tunesmith.model.load import load_model

    base = dict(load_model(str(result.run_dir / "base_model")).named_parameters())
    tuned = dict(result.model.named_parameters())
    assert all(not torch.equal(base[n], tuned[n]) for n in base)
    assert (result.final_dir / "model.safetensors").exists() and not (result.final_dir / "adapter_config.json").exists()


def test_qlora_on_cpu_quantizes_base_and_trains(tmp_path):
    pytest.importorskip("bitsandbytes")
    config = sft_config(tmp_path, "tiny:qwen2", mode="qlora", max_steps=8)
    result = train(config)
    first, last = first_last_loss(result.run_dir)
    assert last < first
    linear = [m for n, m in result.model.named_modules() if n.endswith("q_proj.base_layer")]
    assert linear and type(linear[0]).__name__ == "Linear4bit"
    assert (result.final_dir / "adapter_model.safetensors").exists()


def test_batch_8_equals_batch_2_times_accum_4(tmp_path):
    losses = []
    for batch, accum in ((8, 1), (2, 4)):
        config = sft_config(tmp_path / f"b{batch}", "tiny:qwen2", max_steps=3, batch_size=batch, grad_accum=accum)
        config.lora.dropout = 0.0  # dropout draws differ per micro-batch
        result = train(config)
        losses.append(
            [
                json.loads(x)["loss"]
                for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()
                if '"loss"' in x
            ]
        )
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from tunesmith.errors import TrainingError
    from tunesmith.train import sft

    original, calls = sft.loss_on_trained_positions, []

    def poisoned(model, inputs, num_items_in_batch=None):  # the training loss path; grad_accum 1: call n = step n
        calls.append(1)
        loss = original(model, inputs, num_items_in_batch)
        return loss * float("nan") if len(calls) >= 4 else loss

    monkeypatch.setattr(sft, "loss_on_trained_positions", poisoned)
    config = sft_config(tmp_path, "tiny:qwen2", max_steps=8, save_steps=2)
    with pytest.raises(
        TrainingError,
        match=r"the loss became nan at step 4; the last good checkpoint is kept at .*step-2 \(continue with --resume\)",
    ):
        train(config)
    assert sorted(p.name for p in (tmp_path / "runs" / "t" / "checkpoints").iterdir()) == ["step-2"]


def test_init_from_continues_the_previous_runs_adapter_on_its_base(tmp_path):
    """SFT after SFT: the second run loads the first run's base and adapter (a `tiny:` base is not rebuilt)."""
    first = train(sft_config(tmp_path, "tiny:qwen2"))
    config = sft_config(tmp_path, "tiny:qwen2", init_from=str(first.run_dir))
    config.run.name = "second"
    second = train(config)
    manifest = json.loads((second.run_dir / "manifest.json").read_text())
    assert manifest["base_model"] == str(RunDir.of(first.run_dir).base_model) and manifest["init_from"] == str(
        first.run_dir
    )
    assert not (second.run_dir / "base_model").exists()
    # it starts where the first run ended, not from a fresh adapter
    (first_start, first_end), (second_start, _) = first_last_loss(first.run_dir), first_last_loss(second.run_dir)
    assert first_start - second_start > 0.5 and abs(second_start - first_end) < 0.3, (
        first_start,
        first_end,
        second_start,
    )


def test_notebook_run_train_then_use(tmp_path, tiny_qwen2):
    import tunesmith

    run = tunesmith.Run.train(sft_config(tmp_path, str(tiny_qwen2), max_steps=2, save_steps=100))
    assert run.path == tmp_path / "runs" / "t" and [row["step"] for row in run.metrics if "loss" in row][-1] == 2
    assert run.manifest.trainable_parameters["trainable"] > 0
    assert isinstance(run.generate("What is 2 plus 3?", max_new_tokens=4), str)
