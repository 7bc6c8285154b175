"""`tunesmith rewards dry-run`: sample completions from the model GRPO would start from and score them.

A reward that raises would stop training at its first step; a reward that gives every completion the same
score gives GRPO no signal (advantages are differences within a group). Both are cheap to see here and
expensive to find after an hour of training.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.schema import Config
from tunesmith.data.splits import prepare_splits
from tunesmith.errors import DataError
from tunesmith.generate.generate import GenerationSettings, generate, load_for_generation
from tunesmith.model.base import load_base_model, resolve_base_model, tokenizer_for_run
from tunesmith.model.device import plan_device
from tunesmith.rewards.build import Reward, RewardError, build_rewards, total_scores
from tunesmith.rewards.prompts import grpo_rows, reward_columns
from tunesmith.run_dir import RunDir

SCORE_WIDTH = 7  # characters of a score column in the table


@dataclass
class RewardCheck:
    """One reward's scores on the sampled completions, or the error it raised."""

    name: str
    weight: float
    scores: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def constant(self) -> bool:
        values = [s for s in self.scores if not math.isnan(s)]
        return self.error is None and len(values) > 1 and max(values) == min(values)

    @property
    def mean(self) -> float:
        values = [s for s in self.scores if not math.isnan(s)]
        return statistics.fmean(values) if values else math.nan

    @property
    def std(self) -> float:
        values = [s for s in self.scores if not math.isnan(s)]
        return statistics.pstdev(values) if values else math.nan


@dataclass
class DryRunResult:
    """Completions with each reward's scores and the weighted total; `problems` says what would not train."""

    prompts: list[str]
    completions: list[str]
    checks: list[RewardCheck]
    totals: list[float]

    @property
    def broken(self) -> list[RewardCheck]:
        return [c for c in self.checks if c.error]

    @property
    def constant(self) -> list[RewardCheck]:
        return [c for c in self.checks if c.constant]

    def problems(self) -> list[str]:
        """One line per reward that raised (error) or cannot teach (warning)."""
        lines = [f"error: reward '{c.name}' is broken: {c.error}" for c in self.broken]
        for c in self.constant:
            lines.append(
                f"warning: reward '{c.name}' gave {c.scores[0]:g} to all {len(c.scores)} completions: "
                "it cannot teach anything (GRPO learns from score differences within a group)"
            )
        return lines


def score_completions(
    rewards: list[Reward],
    prompts: list[str],
    completions: list[str],
    columns: dict[str, list],
    conversations: list[list[dict]] | None = None,
) -> DryRunResult:
    """Every reward on every completion; a reward that raises is recorded, not propagated.

    Rewards receive what GRPO training passes them: the prompt conversations and conversational completions.
    """
    checks = []
    as_trl = [[{"role": "assistant", "content": text}] for text in completions]
    for reward in rewards:
        try:
            checks.append(RewardCheck(reward.name, reward.weight, reward(as_trl, prompts=conversations, **columns)))
        except RewardError as exc:
            checks.append(RewardCheck(reward.name, reward.weight, error=exc.message))
    working = [r for r, c in zip(rewards, checks) if not c.error]
    totals = (
        total_scores(working, {c.name: c.scores for c in checks if not c.error})
        if working
        else [math.nan] * len(completions)
    )
    return DryRunResult(prompts, completions, checks, totals)


def dry_run(config: Config, n: int = 8, generations: int = 1, base_dir: str | Path | None = None) -> DryRunResult:
    """Generate `generations` completions for each of `n` training prompts and score them with every reward."""
    rewards = build_rewards(config.grpo, base_dir)
    train_rows = prepare_splits(config)["train"]
    if not train_rows:
        raise DataError("the training split is empty: no prompts to try the rewards on")
    rows = grpo_rows(train_rows[:n], config)
    model, tokenizer = load_policy(config, train_rows)
    samples = generate(model, tokenizer, [row["prompt"] for row in rows], sampling(config, generations))
    completions = [text for group in samples for text in group]
    repeated = [row for row in rows for _ in range(generations)]
    prompts = [_last_user(row["prompt"]) for row in repeated]
    return score_completions(
        rewards, prompts, completions, reward_columns(repeated), [row["prompt"] for row in repeated]
    )


def sampling(config: Config, generations: int) -> GenerationSettings:
    """GRPO's sampling: grpo.temperature and grpo.max_completion_length, `generations` per prompt, seeded."""
    grpo = config.grpo
    return GenerationSettings(
        max_new_tokens=grpo.max_completion_length,
        temperature=grpo.temperature,
        num_samples=generations,
        seed=config.run.seed,
    )


def load_policy(config: Config, train_rows: list[dict]):
    """(model, tokenizer) GRPO would start from: train.init_from's tuned model, else the configured base.

    A `tiny:` base is taken from the run directory when training built it already, else built in a temp folder.
    """
    if config.train.init_from:
        return load_for_generation(config.train.init_from)
    plan = plan_device(config.train.device, config.train.precision)
    with tempfile.TemporaryDirectory() as tmp:
        existing = RunDir.of(Path(config.run.output_dir) / config.run.name)
        run = existing if (existing.base_model / "config.json").exists() else RunDir.of(tmp)
        base = resolve_base_model(config, run, train_rows)
        return load_base_model(config, base, plan), tokenizer_for_run(config, base)


def _last_user(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def result_table(result: DryRunResult, width: int = 120):
    """A rich Table fitting `width` columns: prompt, completion, each reward's score, the weighted total, mean/std."""
    from rich.table import Table

    score_columns = len(result.checks) + 1
    index_width = len(str(len(result.completions)))
    # Each column costs its width + 2 (padding) + 1 (border); the table adds one more border.
    room = max(16, width - 1 - 3 * (3 + score_columns) - index_width - SCORE_WIDTH * score_columns)
    prompt_width = min(20, room // 3)
    table = Table(title="reward dry-run")
    table.add_column("#", justify="right", width=index_width)
    table.add_column("prompt", width=prompt_width, overflow="ellipsis", no_wrap=True)
    table.add_column("completion", width=room - prompt_width, overflow="ellipsis", no_wrap=True)
    for check in result.checks:
        table.add_column(
            f"{check.name}\nx{check.weight:g}", justify="right", width=SCORE_WIDTH, overflow="ellipsis", no_wrap=True
        )
    table.add_column("total", justify="right", style="bold", width=SCORE_WIDTH)
    for i, (prompt, completion) in enumerate(zip(result.prompts, result.completions)):
        scores = ["ERROR" if c.error else f"{c.scores[i]:.3f}" for c in result.checks]
        table.add_row(str(i + 1), _one_line(prompt), _one_line(completion), *scores, f"{result.totals[i]:.3f}")
    table.add_section()
    table.add_row("", "mean", "", *[_stat(c, "mean") for c in result.checks], f"{_fmean(result.totals):.3f}")
    table.add_row("", "std", "", *[_stat(c, "std") for c in result.checks], f"{_pstdev(result.totals):.3f}")
    return table


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(empty)"


def _stat(check: RewardCheck, name: str) -> str:
    return "-" if check.error else f"{getattr(check, name):.3f}"


def _fmean(values: list[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _pstdev(values: list[float]) -> float:
    return statistics.pstdev(values) if values else math.nan
