"""Offline twin of examples/dpo-after-sft (the tests/e2e/test_recipes.py pattern): the real configs with `--set`
overrides to a tiny local model and local rows of exactly the public sets' shapes, each step run with
`tunesmith run --smoke` (data check, train, eval, report, export): SFT, then DPO from the SFT adapter."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_recipes import EXAMPLES, cli, smoke_run, write_jsonl

pytestmark = pytest.mark.slow


def ultrachat_rows(n: int) -> list[dict]:
    """HuggingFaceH4/ultrachat_200k (train_sft) columns: prompt, prompt_id, messages."""
    rows = []
    for i in range(n):
        prompt = f"Give me a short tip about topic number {i}."
        messages = [
            {"content": prompt, "role": "user"},
            {"content": f"Tip {i}: keep it simple and check your work.", "role": "assistant"},
        ]
        rows.append({"prompt": prompt, "prompt_id": f"{i:064x}", "messages": messages})
    return rows


def ultrafeedback_rows(n: int) -> list[dict]:
    """argilla/ultrafeedback-binarized-preferences-cleaned columns: source, prompt, chosen, chosen-rating,
    chosen-model, rejected, rejected-rating, rejected-model (chosen/rejected: [user turn, assistant answer])."""
    rows = []
    for i in range(n):
        prompt = f"Explain idea {i} in one sentence."
        rows.append(
            {
                "source": "evol_instruct",
                "prompt": prompt,
                "chosen": [
                    {"content": prompt, "role": "user"},
                    {"content": f"Idea {i} means doing one clear thing well.", "role": "assistant"},
                ],
                "chosen-rating": 5.0,
                "chosen-model": "gpt-4",
                "rejected": [{"content": prompt, "role": "user"}, {"content": "I do not know.", "role": "assistant"}],
                "rejected-rating": 2.0,
                "rejected-model": "alpaca-7b",
            }
        )
    return rows


def test_dpo_after_sft_twin(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    sft_data = write_jsonl(tmp_path / "ultrachat.jsonl", ultrachat_rows(24))
    sft_sets = [f"data.sources.0.path={sft_data}", "data.sources.0.split=train", "model.name_or_path=tiny:qwen2"]
    cli("data", "check", EXAMPLES / "dpo-after-sft" / "sft.yaml", *[x for s in sft_sets for x in ("--set", s)])
    sft = smoke_run(EXAMPLES / "dpo-after-sft" / "sft.yaml", tmp_path, *sft_sets)

    pairs = write_jsonl(tmp_path / "ultrafeedback.jsonl", ultrafeedback_rows(24))
    dpo_sets = [
        f"data.sources.0.path={pairs}",
        f"train.init_from={sft.root}",
        "model.name_or_path=tiny:qwen2",
        "eval.max_new_tokens=8",
    ]
    cli("data", "check", EXAMPLES / "dpo-after-sft" / "dpo.yaml", *[x for s in dpo_sets for x in ("--set", s)])
    assert "preference pairs (chosen/rejected), for method dpo" in capsys.readouterr().out
    dpo = smoke_run(EXAMPLES / "dpo-after-sft" / "dpo.yaml", tmp_path, *dpo_sets)
    manifest = dpo.read_manifest()
    assert manifest.method == "dpo" and manifest.init_from == str(sft.root)
    assert manifest.reference == "the starting adapter, frozen (init_from)"
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(
        dpo.read_metrics()[-1]
    )
    metrics = json.loads((dpo.eval / "metrics.json").read_text())["metrics"]  # the pipeline's eval stage
    assert {"base", "tuned", "delta"} <= set(metrics["preference_accuracy"]) and "preference_margin" in metrics
    assert 'id="accuracy-chart"' in dpo.report.read_text()
    cli("generate", dpo.root, "--prompt", "Explain idea 3 in one sentence.", "--max-new-tokens", "6")
    pytest.importorskip("llama_cpp")
    # the pipeline merged the DPO adapter over the SFT one's base and wrote the recipe's GGUF, parity-checked in llama.cpp
    assert (dpo.export / "merged" / "config.json").exists() and list(dpo.export.glob("*q4_k_m.gguf"))
