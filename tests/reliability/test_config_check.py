"""`config check` refuses exactly what `train` refuses before training (no sources, missing files, unknown rewards,
a template column absent from the data, a missing model folder or init_from run)."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from tests.reliability import tally
from tests.reliability.mutations import QUESTIONS, valid_config
from tests.reliability.test_fuzz import run_main


def base_config(tmp_path, model) -> dict:
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in QUESTIONS))
    return valid_config(data, str(model), tmp_path / "runs")


def grpo(config: dict, rewards: list[dict]) -> dict:
    config = copy.deepcopy(config)
    config["method"] = "grpo"
    config["grpo"] = {"rewards": rewards, "num_generations": 2, "max_completion_length": 4}
    return config


CASES = {
    "no sources": lambda c: {**c, "data": {**c["data"], "sources": []}},
    "missing data file": lambda c: {**c, "data": {**c["data"], "sources": [{"path": "nowhere/rows.jsonl"}]}},
    "unknown reward name": lambda c: grpo(c, [{"name": "numeric_mach"}]),
    "template column absent": lambda c: {
        **c,
        "data": {
            **c["data"],
            "sources": [
                {
                    "path": c["data"]["sources"][0]["path"],
                    "format": "template",
                    "template": {"user": "{question}", "assistant": "{solution}"},
                }
            ],
        },
    },
    "missing model folder": lambda c: {**c, "model": {"name_or_path": "./no-such-model"}},
    "missing init_from run": lambda c: {**c, "train": {**c["train"], "init_from": "runs/never-trained"}},
}


def verdicts(tmp_path, name: str, raw: dict) -> tuple[int, int, str]:
    path = tmp_path / f"{name.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(raw))
    check, check_out = run_main("config", "check", str(path))
    trained, train_out = run_main("train", str(path), "--smoke")
    return check, trained, check_out + train_out


@pytest.mark.parametrize("name", ["valid", *CASES])
def test_config_check_agrees_with_train(tmp_path, tiny_qwen2, monkeypatch, name):
    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    monkeypatch.chdir(tmp_path)
    config = base_config(tmp_path, tiny_qwen2)
    raw = CASES[name](config) if name != "valid" else config
    check, trained, output = verdicts(tmp_path, name, raw)
    assert "internal error" not in output, output
    assert (check == 0) == (trained == 0), f"config check {check}, train {trained}:\n{output}"
    assert (check == 0) == (name == "valid"), output
    if name != "valid":
        tally.fault(f"config with {name}", "config check and train both refuse")


def test_planted_bug_a_config_check_without_preflight_disagrees(tmp_path, tiny_qwen2, monkeypatch):
    import tunesmith.preflight as preflight

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preflight, "preflight_problems", lambda config: [])
    check, trained, _ = verdicts(tmp_path, "no sources", CASES["no sources"](base_config(tmp_path, tiny_qwen2)))
    assert check == 0 and trained != 0
