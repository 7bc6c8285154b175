"""`tunesmith.train(...)`: one entry point for every method; the CLI calls exactly this."""

from __future__ import annotations

from pathlib import Path

from tunesmith.config.schema import Config
from tunesmith.train.result import TrainResult

__all__ = ["TrainResult", "train"]


def train(config_or_path: Config | str | Path, overrides: list[str] | None = None, smoke: bool = False, resume: bool = False) -> TrainResult:
    """Train from a config (object or YAML/JSON path) plus `key=value` overrides; returns the run summary.

    method sft -> train/sft.py; method grpo -> train/grpo.py (which prepares its run itself: the rewards are
    checked before the model loads).
    """
    config = _load(config_or_path, overrides)
    if config.method == "grpo":
        from tunesmith.train.grpo import run_grpo

        return run_grpo(config, smoke, resume)
    from tunesmith.train.setup import prepare_run
    from tunesmith.train.sft import run_sft

    return run_sft(prepare_run(config, smoke=smoke, resume=resume))


def _load(config_or_path: Config | str | Path, overrides: list[str] | None) -> Config:
    from tunesmith.config.load import config_to_dict, load_config

    if isinstance(config_or_path, Config):
        return load_config(data=config_to_dict(config_or_path), overrides=overrides) if overrides else config_or_path
    return load_config(config_or_path, overrides)
