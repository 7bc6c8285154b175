"""Reward dry-run scoring (no model): broken and constant rewards are reported; GRPO config checks."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from tunesmith.config.load import load_config
from tunesmith.errors import ConfigError
from tunesmith.rewards import build_rewards
from tunesmith.rewards.dry_run import result_table, score_completions


def config_with(rewards, **sections):
    return load_config(data={"method": "grpo", "grpo": {"rewards": rewards}, **sections})


def test_scores_totals_and_problems(tmp_path):
    (tmp_path / "mine.py").write_text(
        "def boom(completions, **kw):\n    return [1 / 0 for _ in completions]\n"
        "def always_one(completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    cfg = config_with(
        [
            {"name": "numeric_match", "weight": 2.0},
            {"function": "mine.py:boom"},
            {"function": "mine.py:always_one", "weight": 0.5},
        ]
    )
    rewards = build_rewards(cfg.grpo, base_dir=tmp_path)
    result = score_completions(rewards, ["q1", "q2"], ["<answer>72</answer>", "7"], {"answer": ["#### 72", "#### 8"]})
    numeric, boom, one = result.checks
    assert numeric.scores == [1.0, 0.0] and (numeric.mean, numeric.std) == (0.5, 0.5)
    assert boom.error == "reward 'boom' raised ZeroDivisionError: division by zero"
    assert one.constant and not numeric.constant
    assert result.totals == [2.5, 0.5]  # the broken reward is left out of the total
    assert result.problems() == [
        "error: reward 'boom' is broken: reward 'boom' raised ZeroDivisionError: division by zero",
        "warning: reward 'always_one' gave 1 to all 2 completions: it cannot teach anything "
        "(GRPO learns from score differences within a group)",
    ]


def test_table_lists_each_reward_score_and_total():
    cfg = config_with(
        [{"name": "format", "options": {"pattern": "answer"}}, {"name": "length", "options": {"max": 10}}]
    )
    rewards = build_rewards(cfg.grpo)
    result = score_completions(rewards, ["p"], ["<answer>5</answer>"], {})
    console = Console(width=120, record=True)
    console.print(result_table(result, 120))
    text = console.export_text()
    assert "format" in text and "length" in text and "total" in text
    assert "1.000" in text and "0.556" in text and "1.556" in text  # length: 10/18 chars
    assert max(len(line) for line in text.splitlines()) <= 120


def test_all_rewards_broken_gives_nan_totals(tmp_path):
    (tmp_path / "r.py").write_text("def bad(completions):\n    return None\n")
    rewards = build_rewards(config_with([{"function": "r.py:bad"}]).grpo, base_dir=tmp_path)
    result = score_completions(rewards, ["p"], ["x"], {})
    assert "returned NoneType" in result.checks[0].error
    assert math.isnan(result.totals[0])


def test_group_size_must_divide_the_batch():
    from tunesmith.train.grpo import _check_group_size

    cfg = config_with(
        [{"name": "format"}],
        train={"batch_size": 6, "grad_accum": 1},
        grpo={"rewards": [{"name": "format"}], "num_generations": 4},
    )
    with pytest.raises(ConfigError, match=r"\(6 x 1\) must be a multiple of grpo.num_generations \(4\)"):
        _check_group_size(cfg)


def test_numeric_reward_adds_the_numeric_eval_metric():
    from tunesmith.train.grpo import with_grpo_eval_metrics

    cfg = config_with([{"name": "numeric_match"}])
    assert with_grpo_eval_metrics(cfg).eval.metrics == ["loss", "numeric"]
    assert cfg.eval.metrics == ["loss"]  # the caller's config is not changed
