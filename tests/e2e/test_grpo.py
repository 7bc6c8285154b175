"""GRPO end to end on tiny local models: the reward rises, the run directory is complete, the dry-run flags
broken rewards, and the GSM8K recipe validates and runs offline in smoke mode."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, shared_path
from tunesmith.cli.main import main
from tunesmith.config.load import load_config
from tunesmith.run_dir import RunDir, read_jsonl

pytestmark = pytest.mark.slow

WORDS = "apple river stone cloud green seven quick table music light paper north".split()


def write_prompts(path: Path, n: int = 200) -> Path:
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(n):
            topic = " ".join(rng.choice(WORDS) for _ in range(4))
            row = {
                "messages": [
                    {"role": "user", "content": f"Say something about {topic}."},
                    {"role": "assistant", "content": "ok"},
                ]
            }
            f.write(json.dumps(row) + "\n")
    return path


def short_answer_config(tmp_path: Path, name: str = "short", **train):
    """Prompts to a tiny random model, rewarded for few characters (it never emits EOS: always 8 tokens)."""
    return {
        "run": {"name": name, "output_dir": str(tmp_path / "runs"), "seed": 0},
        "model": {"name_or_path": "tiny:qwen2", "tiny": {"layers": 2, "hidden": 64, "heads": 4, "vocab_size": 512}},
        "data": {
            "sources": [{"path": str(write_prompts(tmp_path / "prompts.jsonl")), "format": "messages"}],
            "split": {"val": 0.0, "test": 0.05},
        },
        "method": "grpo",
        "train": {
            "mode": "full",
            "batch_size": 8,
            "grad_accum": 1,
            "max_steps": 40,
            "learning_rate": 1e-2,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
            "logging_steps": 1,
            "save_steps": 20,
            "save_total_limit": 1,
            **train,
        },
        # The char length of 8 tokens still varies with the tokens picked: variance from the first step.
        "grpo": {
            "num_generations": 4,
            "max_completion_length": 8,
            "rewards": [{"name": "length", "options": {"max": 8}}],
        },
        "tracking": {"report_to": ["tensorboard"]},
    }


def test_grpo_learns_a_short_answer_reward(tmp_path, monkeypatch):
    """A tiny random model learns to write fewer characters: the mean reward clearly rises in 40 steps."""
    from tunesmith.train.api import train

    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    result = train(load_config(data=short_answer_config(tmp_path)))
    run = RunDir.of(result.run_dir)
    rows = run.read_metrics()
    rewards = [r["reward"] for r in rows]
    assert [r["step"] for r in rows] == list(range(1, 41))
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert last > first + 0.15, f"mean reward first 10 steps {first:.3f}, last 10 {last:.3f}"
    assert {"rewards/length/mean", "rewards/length/std", "reward_std", "completion_length", "loss"} <= set(rows[-1])
    assert result.rewards["reward_last"] == pytest.approx(last)
    assert (run.final / "config.json").exists() and (run.checkpoints / "step-40").exists()
    assert list(run.tensorboard.glob("events.out.tfevents.*"))
    assert json.loads(run.manifest.read_text())["method"] == "grpo"


def gsm8k_twin(tmp_path: Path, rewards: list[dict] | None = None) -> Path:
    """The recipe with a tiny local model and GSM8K rows from ../shared (its offline twin)."""
    data = yaml.safe_load((REPO / "examples" / "finetome-then-gsm8k" / "grpo.yaml").read_text())
    data["run"].update(output_dir=str(tmp_path / "runs"))
    data["model"] = {"name_or_path": "tiny:qwen2", "tiny": {"layers": 2, "hidden": 64, "heads": 4, "vocab_size": 512}}
    data["data"]["sources"] = [{"path": str(shared_path("gsm8k", "train.jsonl")), "limit": 60}]
    data["data"]["split"] = {"val": 0.0, "test": 0.1}
    data["train"].update(batch_size=4, grad_accum=1, smoke_steps=2, smoke_examples=8, init_from=None)
    data["grpo"].update(num_generations=4, max_completion_length=16)
    if rewards:
        data["grpo"]["rewards"] += rewards
    data["tracking"] = {"report_to": ["none"]}
    path = tmp_path / "gsm8k-tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_gsm8k_recipe_validates(capsys):
    assert main(["config", "check", "--schema-only", str(REPO / "examples" / "finetome-then-gsm8k" / "grpo.yaml")]) == 0
    config = load_config(REPO / "examples" / "finetome-then-gsm8k" / "grpo.yaml")
    assert (config.method, config.train.mode, config.model.name_or_path) == (
        "grpo",
        "qlora",
        "meta-llama/Llama-3.2-1B-Instruct",
    )
    assert [r.name for r in config.grpo.rewards] == ["format_exact", "format_approx", "answer_check", "number_match"]
    assert "numeric" in config.eval.metrics


def test_gsm8k_twin_runs_in_smoke_mode(tmp_path, monkeypatch):
    """QLoRA on the tiny model, 2 steps: run dir with adapter, reward metrics, test split with the reference."""
    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    assert main(["train", str(gsm8k_twin(tmp_path)), "--smoke"]) == 0
    run = RunDir.of(tmp_path / "runs" / "gsm8k-grpo-smoke")
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == [1, 2]
    assert {
        "rewards/format_exact/mean",
        "rewards/format_approx/mean",
        "rewards/answer_check/mean",
        "rewards/number_match/mean",
        "reward",
        "completion_length",
    } <= set(rows[0])
    assert (run.final / "adapter_config.json").exists()
    test_rows = read_jsonl(run.split_file("test"))
    assert test_rows and "####" in test_rows[0]["meta"]["answer"]
    assert test_rows[0]["messages"][-1]["role"] == "assistant"
    assert "numeric" in run.config().eval.metrics


def test_dry_run_on_gsm8k_flags_broken_and_constant_rewards(tmp_path, capsys):
    (tmp_path / "my_rewards.py").write_text(
        "def boom(completions, answer, **kw):\n    raise ValueError('no answer tag')\n"
        "def always_half(completions, **kw):\n    return [0.5] * len(completions)\n"
    )
    config = gsm8k_twin(
        tmp_path, rewards=[{"function": "my_rewards.py:boom"}, {"function": "my_rewards.py:always_half"}]
    )
    code = main(["rewards", "dry-run", str(config), "-n", "3", "-g", "2"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1
    assert "form…" in out and "total" in out and "std" in out  # six reward columns: names cut to fit 80 columns
    assert "error: reward 'boom' is broken: reward 'boom' raised ValueError: no answer tag" in out
    assert "warning: reward 'always_half' gave 0.5 to all 6 completions: it cannot teach anything" in out


def test_grpo_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    from tunesmith.train.api import train

    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    train(load_config(data=short_answer_config(tmp_path, max_steps=2, save_steps=2)))
    result = train(load_config(data=short_answer_config(tmp_path, max_steps=4, save_steps=2)), resume=True)
    run = RunDir.of(result.run_dir)
    assert result.steps == 4
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4]
    assert len(json.loads(run.manifest.read_text())["resumes"]) == 1


def test_grpo_starts_from_an_sft_runs_adapter(tmp_path, monkeypatch):
    """train.init_from: GRPO continues the SFT adapter on the SFT run's base; the adapter changes."""
    from safetensors.torch import load_file

    from tunesmith.train.api import train

    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    sft = short_answer_config(tmp_path, name="sft", mode="lora", max_steps=2, learning_rate=1e-3)
    sft.update(method="sft", grpo={"rewards": []})
    sft_run = RunDir.of(train(load_config(data=sft)).run_dir)
    grpo = short_answer_config(tmp_path, name="grpo", mode="lora", max_steps=2, init_from=str(sft_run.root))
    run = RunDir.of(train(load_config(data=grpo)).run_dir)
    manifest = json.loads(run.manifest.read_text())
    assert manifest["base_model"] == str(sft_run.base_model) and manifest["init_from"] == str(sft_run.root)
    assert not run.base_model.exists()
    before = load_file(sft_run.final / "adapter_model.safetensors")
    after = load_file(run.final / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not (before[k] == after[k]).all() for k in before)
