"""The training-method interface: one table dispatches by config.method, the four steps run in order, and
--smoke is one config change (config/smoke.py) that nothing else interprets."""

from __future__ import annotations

import ast
import sys
import types
import typing
from pathlib import Path

import pytest

import tunesmith
from tunesmith.config import load_config
from tunesmith.config.schema import Config
from tunesmith.config.smoke import SMOKE_EVAL_EXAMPLES, smoke
from tunesmith.data.splits import prepare_splits
from tunesmith.errors import ConfigError
from tunesmith.train import api
from tunesmith.train.method import TrainingMethod
from tunesmith.train.result import TrainResult

PACKAGE = Path(tunesmith.__file__).parent


def table_vs_schema(methods: dict[str, str]) -> set[str]:
    """Method names in the table but not in Config.method, or the other way round."""
    return set(methods) ^ set(typing.get_args(Config.model_fields["method"].annotation))


def test_the_method_table_names_exactly_the_methods_the_config_accepts():
    assert table_vs_schema(api.METHODS) == set()
    assert table_vs_schema({**api.METHODS, "no_such_method": "x"}) == {"no_such_method"}  # planted: table only
    assert table_vs_schema({k: v for k, v in api.METHODS.items() if k != "sft"}) == {"sft"}  # planted: schema only
    for name in api.METHODS:
        assert isinstance(api.method_for(name), TrainingMethod) and api.method_for(name).name == name


def test_a_new_method_is_one_module_plus_one_table_line(tmp_path, monkeypatch):
    """A method module plugged in through METHODS alone is run by tunesmith.train: four steps, in order."""
    calls = []

    class Recorder(TrainingMethod):
        name = "sft"

        def prepare(self, config, resume):
            calls.append(("prepare", config.run.name, resume))
            return "ctx"

        def build_trainer(self, ctx):
            calls.append(("build_trainer", ctx))
            return "trainer"

        def train(self, trainer, ctx):
            calls.append(("train", trainer, ctx))
            return "output"

        def finish(self, ctx, trainer, output, seconds):
            calls.append(("finish", ctx, trainer, output))
            return TrainResult(Path("r"), Path("r/final"), 0, None, None, 0, seconds)

    module = types.ModuleType("recorder_method")
    module.METHOD = Recorder
    monkeypatch.setitem(sys.modules, "recorder_method", module)
    monkeypatch.setitem(api.METHODS, "sft", "recorder_method")
    result = tunesmith.train(load_config(data={"run": {"name": "n"}}), smoke=True)
    assert calls == [
        ("prepare", "n-smoke", False),
        ("build_trainer", "ctx"),
        ("train", "trainer", "ctx"),
        ("finish", "ctx", "trainer", "output"),
    ]
    assert result.seconds >= 0


def test_smoke_is_a_new_config_with_the_smoke_settings():
    config = load_config(
        data={"run": {"name": "n"}, "train": {"smoke_steps": 2, "smoke_examples": 5}, "eval": {"limit": 50}}
    )
    before = config.model_dump()
    quick = smoke(config)
    assert config.model_dump() == before  # the caller's config is left alone
    assert (quick.run.name, quick.run.overwrite, quick.export.ollama_name) == ("n-smoke", True, "n")
    split = quick.data.split
    assert (split.train_limit, split.val_limit, split.test_limit) == (5, SMOKE_EVAL_EXAMPLES, SMOKE_EVAL_EXAMPLES)
    t = quick.train
    assert (t.max_steps, t.logging_steps, t.save_checkpoints, t.eval_during_training) == (2, 1, False, False)
    assert (quick.eval.limit, quick.tracking.report_to) == (3, ["none"])


def test_smoke_grpo_steps_score_one_whole_group():
    raw = {
        "method": "grpo",
        "grpo": {"num_generations": 4, "rewards": [{"name": "length"}]},
        "train": {"batch_size": 3, "grad_accum": 5},
    }
    t = smoke(load_config(data=raw)).train
    assert (t.batch_size, t.grad_accum) == (4, 1)


def test_split_limits_keep_the_first_rows_of_each_split(tmp_path):
    data = tmp_path / "a.jsonl"
    data.write_text("".join(f'{{"text": "a{i}"}}\n' for i in range(100)))
    raw = {"data": {"split": {"val": 0.1, "test": 0.1}, "sources": [{"path": str(data)}]}}
    full = prepare_splits(load_config(data=raw))
    raw["data"]["split"].update(train_limit=7, val_limit=2, test_limit=3)
    limited = prepare_splits(load_config(data=raw))
    assert limited == {"train": full["train"][:7], "val": full["val"][:2], "test": full["test"][:3]}


def smoke_readers(root: Path) -> list[str]:
    """`file:line` of every use of the smoke_* settings outside config/ (config/smoke.py is their one reader)."""
    found = []
    for file in sorted(root.rglob("*.py")):
        if file.relative_to(root).parts[0] == "config":
            continue
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("smoke_steps", "smoke_examples"):
                found.append(f"{file.relative_to(root)}:{node.lineno}")
    return found


def test_only_config_smoke_interprets_smoke(tmp_path):
    assert smoke_readers(PACKAGE) == []
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "common.py").write_text(
        "def steps(config, smoke):\n    return config.train.smoke_steps if smoke else 5\n"
    )
    assert smoke_readers(tmp_path) == ["train/common.py:2"]


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown training method 'nope'"):
        api.method_for("nope")


def test_tunesmith_train_stays_callable_after_the_train_package_is_imported(monkeypatch):
    import tunesmith.train.api  # noqa: F401 - this import rebinds tunesmith.train to the package

    seen = []
    monkeypatch.setattr(api, "train", lambda *args, **kwargs: seen.append((args, kwargs)) or "result")
    assert tunesmith.train("config.yaml", smoke=True) == "result"
    assert seen == [(("config.yaml",), {"smoke": True})]
