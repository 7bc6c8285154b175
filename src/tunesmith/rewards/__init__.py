"""GRPO rewards: built-in and custom reward functions, their weighted total, and the reward dry-run.

A reward is a pure function `(completions: list[str], **columns) -> list[float]`; `columns` are the data
row's columns (e.g. GSM8K's `answer`), one list each, aligned with the completions.
"""

from tunesmith.rewards.build import (
    Reward,
    RewardError,
    build_reward,
    build_rewards,
    completion_text,
    load_function,
    to_trl,
    total_scores,
)
from tunesmith.rewards.builtin import BUILTINS, FORMAT_PATTERNS

__all__ = [
    "BUILTINS",
    "FORMAT_PATTERNS",
    "Reward",
    "RewardError",
    "build_reward",
    "build_rewards",
    "completion_text",
    "load_function",
    "to_trl",
    "total_scores",
]
