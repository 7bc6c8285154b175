"""Config -> Reward objects: built-ins or custom `file.py:function` / `module:function`, options bound, weighted.

A Reward scores plain-text completions with the dataset columns: `reward(completions, **columns)`.
`to_trl(reward)` adapts one to TRL's GRPOTrainer signature `f(prompts, completions, completion_ids, **kwargs)`.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.schema import GRPOConfig, RewardConfig
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.rewards.builtin import BUILTINS, USES_REFERENCE
from tunesmith.scoring.metrics import load_function

# Keys TRL adds to the reward kwargs besides the dataset columns; rewards never see them.
TRL_EXTRA_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments", "prompts", "completion_ids")


class RewardError(TunesmithError):
    """A reward function raised or returned something that is not one score per completion."""

    exit_code = 1


@dataclass
class Reward:
    """One named, weighted reward function with its options bound."""

    name: str
    weight: float
    func: Callable[..., list[float]]
    options: dict = field(default_factory=dict)
    custom: bool = False  # a user's function: called as TRL calls it (prompts=, completions=, **columns)

    def __call__(self, completions: list, prompts: list | None = None, **columns) -> list[float]:
        """Scores for the completions; raises RewardError naming this reward when the function misbehaves.

        Built-ins get the completions' text; a custom function gets `prompts` and `completions` exactly as
        TRL passes them (conversational: lists of messages), so rewards copied from TRL/Unsloth code run as is.
        """
        try:
            if self.custom:
                scores = self.func(**_accepted(self.func, {"prompts": prompts, "completions": completions, **columns}))
            else:
                scores = self.func([completion_text(c) for c in completions], **_accepted(self.func, columns))
        except TunesmithError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user's reward may raise anything; name it and pass it on
            raise RewardError(f"reward '{self.name}' raised {type(exc).__name__}: {exc}") from exc
        return _check_scores(self.name, scores, len(completions))


def build_rewards(grpo: GRPOConfig, base_dir: str | Path | None = None) -> list[Reward]:
    """The configured rewards, with unique names (a repeated name gets a #2, #3 suffix)."""
    rewards = [build_reward(cfg, grpo.reference_column, base_dir) for cfg in grpo.rewards]
    seen: dict[str, int] = {}
    for reward in rewards:
        seen[reward.name] = seen.get(reward.name, 0) + 1
        if seen[reward.name] > 1:
            reward.name = f"{reward.name}#{seen[reward.name]}"
    return rewards


def build_reward(cfg: RewardConfig, reference_column: str = "answer", base_dir: str | Path | None = None) -> Reward:
    """One reward from its config entry; unknown names and unloadable functions raise ConfigError."""
    options = dict(cfg.options)
    if cfg.name is not None:
        if cfg.name not in BUILTINS:
            raise ConfigError(
                f"grpo.rewards: unknown built-in reward '{cfg.name}'",
                hint=f"use one of {', '.join(BUILTINS)}, or 'function: file.py:func' for your own",
            )
        if cfg.name in USES_REFERENCE:
            options.setdefault("reference_column", reference_column)
        func, name = BUILTINS[cfg.name], cfg.name
    else:
        func = load_function(cfg.function, "reward function", base_dir)
        name = cfg.function.rsplit(":", 1)[1]
    _check_options(name, func, options)
    bound = functools.partial(func, **options) if options else func
    return Reward(name=name, weight=cfg.weight, func=bound, options=options, custom=cfg.function is not None)


def total_scores(rewards: Sequence[Reward], scores: dict[str, list[float]]) -> list[float]:
    """Weighted sum per completion; a NaN score (a reward that abstains) counts as 0, as in TRL."""
    count = len(next(iter(scores.values()))) if scores else 0
    return [sum(r.weight * _zero_nan(scores[r.name][i]) for r in rewards) for i in range(count)]


def to_trl(reward: Reward) -> Callable:
    """The reward in TRL's form: text out of conversational completions, TRL's own kwargs dropped."""

    def trl_reward(prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        columns = {k: v for k, v in kwargs.items() if k not in TRL_EXTRA_KWARGS}
        return reward(completions, prompts=prompts, **columns)

    trl_reward.__name__ = reward.name  # TRL logs rewards/<__name__>/mean and /std
    return trl_reward


def completion_text(completion) -> str:
    """Text of a completion: a string, or TRL's conversational [{'role': 'assistant', 'content': ...}]."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


def _accepted(func: Callable, columns: dict) -> dict:
    """The columns the function can take: all when it has **kwargs, else only its named parameters."""
    params = _parameters(func)
    if params is None or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return columns
    return {k: v for k, v in columns.items() if k in params}


def _parameters(func: Callable):
    try:
        return inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None


def _check_options(name: str, func: Callable, options: dict) -> None:
    """Unknown options are config errors, except for a function that takes only **kwargs (cannot tell)."""
    params = _parameters(func)
    if params is None:
        return
    named = {k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {
        "completions",
        "prompts",
    }
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if takes_any and not _keyword_only(params):
        return
    unknown = sorted(set(options) - named)
    if unknown:
        raise ConfigError(
            f"grpo.rewards '{name}': unknown option(s) {', '.join(unknown)}",
            hint=f"options of '{name}': {', '.join(sorted(named)) or 'none'}",
        )


def _keyword_only(params) -> set[str]:
    return {k for k, p in params.items() if p.kind is p.KEYWORD_ONLY}


def _check_scores(name: str, scores, expected: int) -> list[float]:
    if not isinstance(scores, (list, tuple)) or len(scores) != expected:
        got = f"{len(scores)} values" if isinstance(scores, (list, tuple)) else type(scores).__name__
        raise RewardError(f"reward '{name}' returned {got}; expected a list of {expected} floats (one per completion)")
    try:
        return [math.nan if s is None else float(s) for s in scores]
    except (TypeError, ValueError):
        raise RewardError(f"reward '{name}' returned a non-number; expected floats (or None to abstain)") from None


def _zero_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value
