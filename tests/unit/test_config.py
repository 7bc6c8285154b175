"""Config: strict loading, every problem at once with key paths, did-you-mean, overrides typed by schema."""

from __future__ import annotations

import json

import pytest

from tunesmith.config import load_config
from tunesmith.config.schema import Config
from tunesmith.config.show import render_config
from tunesmith.errors import ConfigError


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_key_names_path_and_suggests(tmp_path):
    path = write(tmp_path, "train: {learnin_rate: 1e-4}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "train.learnin_rate" in text
    assert "did you mean 'learning_rate'" in text
    assert "line 1" in text


def test_keys_from_other_sections_and_tools_point_to_their_place(tmp_path):
    # A flat JSON config as written for a plain transformers/peft script: every key gets its tunesmith path.
    flat = {
        "learning_rate": 2e-4,
        "num_train_epochs": 3,
        "lora_r": 16,
        "lora_alpha": 32,
        "max_seq_length": 512,
        "train": {"lora_r": 8, "seed": 1},
    }
    path = write(tmp_path, json.dumps(flat), "flat.json")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert sorted(info.value.problems) == sorted(
        [
            "learning_rate: unknown key 'learning_rate'; did you mean 'train.learning_rate'?",
            "num_train_epochs: unknown key 'num_train_epochs'; did you mean 'train.epochs'?",
            "lora_r: unknown key 'lora_r'; did you mean 'lora.r'?",
            "lora_alpha: unknown key 'lora_alpha'; did you mean 'lora.alpha'?",
            "max_seq_length: unknown key 'max_seq_length'; did you mean 'data.max_length'?",
            "train.lora_r: unknown key 'lora_r'; did you mean 'lora.r'?",
            "train.seed: unknown key 'seed'; did you mean 'run.seed'?",
        ]
    )
    # The same key spelt alike inside its own section still wins.
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(data={"train": {"epoch": 3}})


def test_every_problem_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        "train:\n  learnin_rate: 1e-4\n  batch_size: 0\nmodel: {dtype: float64}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert len(problems) == 3
    assert any("train.learnin_rate" in p for p in problems)
    assert any("train.batch_size" in p and "greater than or equal to 1" in p for p in problems)
    assert any("model.dtype" in p for p in problems)
    assert problems == sorted(problems, key=lambda p: int(p.split(":")[0].split()[1]))


def test_exclusive_options_say_so(tmp_path):
    path = write(tmp_path, "data:\n  sources:\n    - {path: a.jsonl, limit: 5, sample: 3}\n")
    with pytest.raises(ConfigError, match="'limit' and 'sample' exclude each other"):
        load_config(path)


def test_split_shares_must_leave_training_rows():
    with pytest.raises(ConfigError, match="leaves no training rows"):
        load_config(data={"data": {"split": {"val": 0.6, "test": 0.5}}})


def test_overrides_are_typed_by_schema(tmp_path):
    path = write(tmp_path, "train: {learning_rate: 2e-4}\ndata:\n  sources:\n    - {path: a.jsonl}\n")
    cfg = load_config(
        path, ["train.learning_rate=1e-4", "train.max_steps=7", "data.sources.0.limit=5", "tracking.report_to=[none]"]
    )
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.train.max_steps == 7
    assert cfg.data.sources[0].limit == 5
    assert cfg.tracking.report_to == ["none"]


def test_bad_override_is_a_config_error():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(overrides=["train.learning_rate"])
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(overrides=["train.epochs=many"])


def test_json_config_and_line_of_json_error(tmp_path):
    good = write(tmp_path, json.dumps({"run": {"name": "j"}}), "c.json")
    assert load_config(good).run.name == "j"
    bad = write(tmp_path, '{"run": {"name": }}', "bad.json")
    with pytest.raises(ConfigError, match=r"bad.json:1:\d+: invalid JSON"):
        load_config(bad)


def test_missing_file():
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("/nonexistent/config.yaml")


def test_every_field_has_a_description():
    from pydantic import BaseModel

    def walk(model: type[BaseModel], prefix: str):
        for name, field in model.model_fields.items():
            assert field.description, f"{prefix}{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")

    walk(Config, "")


def test_show_prints_every_section_with_help(tmp_path):
    path = write(tmp_path, "model: {name_or_path: tiny:qwen2}\ndata:\n  sources:\n    - {path: a.jsonl}\n")
    text = render_config(load_config(path))
    for section in ["run", "model", "data", "method", "lora", "quantization", "train", "eval", "export", "tracking"]:
        assert f"\n{section}:" in "\n" + text
    assert "learning_rate: 0.0002  # Peak learning rate." in text
    assert 'name_or_path: "tiny:qwen2"' in text
