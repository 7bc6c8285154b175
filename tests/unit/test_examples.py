"""Every shipped example config validates, and the packaged quickstart config is examples/quickstart.yaml."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tunesmith.config import load_config

EXAMPLES = sorted(p for p in (REPO / "examples").rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


def test_examples_exist():
    names = {p.relative_to(REPO / "examples").parts[0] for p in EXAMPLES}
    assert {
        "quickstart.yaml",
        "yahoo-questions",
        "experimentation-qa",
        "intent-json",
        "meta-review-summary",
        "finetome-then-gsm8k",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_example_config_is_valid(path):
    load_config(path)


def test_config_check_cli_passes_on_every_example():
    result = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "config", "check", "--schema-only", *map(str, EXAMPLES)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok: ") == len(EXAMPLES)


def test_packaged_quickstart_is_the_example():
    from tunesmith.quickstart import quickstart_config_text

    assert quickstart_config_text() == (REPO / "examples" / "quickstart.yaml").read_text()


def test_recipes_keep_the_settings_users_asked_for():
    yahoo = load_config(REPO / "examples/yahoo-questions/config.yaml")
    assert (yahoo.model.name_or_path, yahoo.train.mode, yahoo.lora.r, yahoo.train.learning_rate) == (
        "Qwen/Qwen2.5-1.5B-Instruct",
        "qlora",
        16,
        2e-4,
    )
    assert (yahoo.train.epochs, yahoo.train.batch_size, yahoo.train.grad_accum, yahoo.data.max_length) == (3, 8, 4, 256)
    assert yahoo.data.sources[0].sample == 100_000 and yahoo.data.split.val == 0.1 and yahoo.run.seed == 42
    qa = load_config(REPO / "examples/experimentation-qa/config.json")
    assert [s.weight for s in qa.data.sources] == [2.0, 1.0]
    assert (qa.train.optimizer, qa.train.save_steps, qa.train.save_total_limit, qa.lora.alpha) == (
        "paged_adamw_8bit",
        500,
        3,
        32,
    )
    assert qa.quantization.double_quant and qa.quantization.compute_dtype == "bfloat16"
    intent = load_config(REPO / "examples/intent-json/config.yaml")
    assert intent.train.device == "auto" and intent.train.precision == "auto"  # MPS by defaults: fp32
    assert (intent.train.eval_steps, intent.train.save_total_limit, intent.export.gguf) == (100, 5, ["q4_k_m"])
    summary = load_config(REPO / "examples/meta-review-summary/config.yaml")
    assert (summary.train.mode, summary.train.learning_rate, summary.data.clean.keep_chars) == (
        "full",
        1e-5,
        r"a-zA-Z0-9\s",
    )
    grpo = load_config(REPO / "examples/finetome-then-gsm8k/grpo.yaml")
    assert grpo.method == "grpo" and grpo.train.init_from == "runs/finetome-sft"
    assert [r.name for r in grpo.grpo.rewards] == ["format_exact", "format_approx", "answer_check", "number_match"]
