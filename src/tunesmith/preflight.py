"""What `train` would refuse before training, checked without loading a model: `config check` runs this.

The checks call the same functions `train` calls on its way to the first step (data sources read, converted,
cleaned and split; GRPO rewards built and tried on the reference answers; `train.init_from` and a local model
folder present), so a config that passes `config check` is one that `train` starts.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.config.schema import Config
from tunesmith.errors import TunesmithError


def preflight_problems(config: Config) -> list[str]:
    """Every problem `train` would stop at before its first step, one line (or a few) each."""
    problems: list[str] = []

    def attempt(check, *args):
        try:
            return check(*args)
        except TunesmithError as exc:
            problems.append(str(exc))
            return None

    attempt(_model, config)
    attempt(_init_from, config)
    if config.method == "grpo":
        attempt(_vllm, config)
    rewards = attempt(_rewards, config) if config.method == "grpo" else None
    splits = attempt(_splits, config)
    if rewards and splits:
        attempt(_try_rewards, config, rewards, splits)
    return problems


def _model(config: Config) -> None:
    from tunesmith.errors import ModelError
    from tunesmith.model.load import is_tiny

    name = config.model.name_or_path
    if config.train.init_from or is_tiny(name):
        return
    if (name.startswith((".", "/", "~")) or name.endswith(".gguf")) and not Path(name).expanduser().exists():
        raise ModelError(f"model.name_or_path {name}: no such file or folder", hint="check the path, or use a hub id")


def _init_from(config: Config) -> None:
    if config.train.init_from:
        from tunesmith.run_dir import RunDir

        RunDir.of(config.train.init_from).require_finished()


def _vllm(config: Config) -> None:
    from tunesmith.model.device import plan_device
    from tunesmith.train.grpo import check_vllm

    check_vllm(config.grpo, plan_device(config.train.device, config.train.precision).device)


def _rewards(config: Config):
    from tunesmith.rewards.build import build_rewards

    return build_rewards(config.grpo, base_dir=Path.cwd())


def _splits(config: Config):
    from tunesmith.data.splits import prepare_splits

    return prepare_splits(config)


def _try_rewards(config: Config, rewards, splits) -> None:
    """Score the reference answers as GRPO's preflight does, so a broken reward shows here too."""
    from tunesmith.rewards.prompts import grpo_rows
    from tunesmith.train.grpo import preflight_rewards

    preflight_rewards(rewards, grpo_rows(splits["train"], config), config.grpo.reference_column)
