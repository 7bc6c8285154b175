"""`tunesmith.train(...)`: one entry point for every method; the CLI calls exactly this."""

from __future__ import annotations

import importlib
from pathlib import Path

from tunesmith.config.load import config_to_dict, load_config
from tunesmith.config.schema import Config
from tunesmith.config.smoke import smoke as smoke_config
from tunesmith.errors import ConfigError
from tunesmith.train.method import TrainingMethod, run_method
from tunesmith.train.result import TrainResult

__all__ = ["METHODS", "TrainResult", "method_for", "train"]

# config.method -> the module whose `METHOD` class trains it (imported only then: torch / trl load lazily).
# A new method is one module (see train/method.py) plus one line here.
METHODS: dict[str, str] = {
    "sft": "tunesmith.train.sft",
    "grpo": "tunesmith.train.grpo",
    # one module for the four preference methods on TRL: "module:Class" names the class
    "dpo": "tunesmith.train.preference:DPOMethod",
    "orpo": "tunesmith.train.preference:ORPOMethod",
    "kto": "tunesmith.train.preference:KTOMethod",
    "simpo": "tunesmith.train.preference:SimPOMethod",
}


def train(
    config_or_path: Config | str | Path,
    overrides: list[str] | None = None,
    smoke: bool = False,
    resume: bool = False,
    force: bool = False,
) -> TrainResult:
    """Train from a config (object or YAML/JSON path) plus `key=value` overrides; returns the run summary.

    `smoke=True` trains the smoke version of the config (config/smoke.py). First the memory plan
    (tunesmith/plan): a run that will not fit is refused before anything loads, unless `force`.
    """
    from tunesmith.plan.guard import check_plan, record_plan
    from tunesmith.plan.measure import return_freed_memory_at_once
    from tunesmith.run_lock import release_all

    config = load(config_or_path, overrides)
    if smoke:
        config = smoke_config(config)
    # a --smoke run is a handful of examples for a few steps, there to test the config in seconds: the fit
    # check is for the real run (`tunesmith plan --smoke` still plans a smoke run on request)
    plan = None if smoke else check_plan(config, force=force)
    if plan is not None and plan.setup.lean_memory:
        return_freed_memory_at_once()
    try:
        result = run_method(method_for(config.method), config, resume)
    finally:
        release_all()  # the run directory is free once training returns (a notebook kernel lives on)
    record_plan(result.run_dir, plan)
    return result


def method_for(name: str) -> TrainingMethod:
    """A fresh instance of the training method `name` (one per run)."""
    if name not in METHODS:
        raise ConfigError(f"method: unknown training method '{name}'", hint=f"choose from: {', '.join(METHODS)}")
    module, _, attribute = METHODS[name].partition(":")
    return getattr(importlib.import_module(module), attribute or "METHOD")()


def load(config_or_path: Config | str | Path, overrides: list[str] | None = None) -> Config:
    """A Config from a Config (overrides re-validated) or a config file."""
    if isinstance(config_or_path, Config):
        return load_config(data=config_to_dict(config_or_path), overrides=overrides) if overrides else config_or_path
    return load_config(config_or_path, overrides)
