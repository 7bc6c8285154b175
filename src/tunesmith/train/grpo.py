"""GRPO training on TRL's GRPOTrainer: our rewards, our run directory, optionally from an SFT run's adapter.

The entry point reads setup -> train -> save, like SFT: `prepare_run` (shared with SFT) makes the run
directory, saves the splits and loads the base; the prompts are the training conversations minus their last
assistant turn (rendered by TRL with the run's chat template); the rewards come from `grpo.rewards`.
TRL logs each reward's mean/std, the total reward, KL (when beta > 0) and completion lengths; the metrics
callback here writes them to metrics.jsonl, TensorBoard gets the same numbers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PrinterCallback, TrainerCallback, set_seed

from tunesmith.config.schema import Config
from tunesmith.errors import ConfigError, TrainingError
from tunesmith.rewards.build import Reward, RewardError, build_rewards, to_trl
from tunesmith.rewards.prompts import grpo_rows, reward_columns
from tunesmith.train.callbacks import MetricsCallback, RichProgressCallback, save_model_atomically
from tunesmith.train.result import TrainResult
from tunesmith.run_dir import RunDir

# TRL log keys -> metrics.jsonl names (rewards/<name>/mean and /std keep their names).
GRPO_METRIC_KEYS = {
    "loss": "loss",
    "learning_rate": "lr",
    "grad_norm": "grad_norm",
    "reward": "reward",
    "reward_std": "reward_std",
    "kl": "kl",
    "completions/mean_length": "completion_length",
    "completions/clipped_ratio": "clipped_ratio",
    "frac_reward_zero_std": "frac_reward_zero_std",
    "entropy": "entropy",
}


def run_grpo(config: Config, smoke: bool = False, resume: bool = False) -> GRPOTrainResult:
    """Train with GRPO as configured, into the config's run directory."""
    from tunesmith.train.common import run_trainer
    from tunesmith.train.setup import finish_run, prepare_run

    started = time.perf_counter()
    config = with_grpo_eval_metrics(config)
    rewards = build_rewards(config.grpo, base_dir=Path.cwd())
    ctx = prepare_run(config, smoke=smoke, resume=resume, load=False)
    rows = grpo_rows(ctx.splits["train"], config)
    preflight_rewards(rewards, rows, config.grpo.reference_column)
    load_policy(ctx)
    trainer = build_trainer(ctx, rewards, rows)
    run_trainer(trainer, ctx)
    save_model_atomically(trainer.model, ctx.tokenizer, ctx.run.final)
    result = _result(ctx, trainer, rewards, time.perf_counter() - started)
    finish_run(ctx, steps=result.steps, tokens=result.tokens, train_loss=result.train_loss, rewards=result.rewards)
    return result


def build_trainer(ctx, rewards: list[Reward], rows: list[dict]):
    """A GRPOTrainer over the prompt rows with our rewards and the shared run-directory callbacks."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from tunesmith.train.common import check_launch, common_training_kwargs

    _check_group_size(ctx.config)
    grpo = ctx.config.grpo
    kwargs = common_training_kwargs(ctx, has_val=False)
    if ctx.smoke:  # a smoke run has a handful of prompts: one group per step so every step really runs
        kwargs.update(per_device_train_batch_size=grpo.num_generations, gradient_accumulation_steps=1)
    _check_enough_prompts(len(rows), kwargs, grpo.num_generations)
    args = GRPOConfig(
        **kwargs,
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        beta=grpo.beta,
        reward_weights=[r.weight for r in rewards],
    )
    check_launch(args)
    trainer = GRPOTrainer(
        model=ctx.model,
        reward_funcs=[to_trl(r) for r in rewards],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=ctx.tokenizer,
        callbacks=grpo_callbacks(ctx),
    )
    trainer.remove_callback(PrinterCallback)  # prints every log dict (40 GRPO keys); the progress bar shows them
    return trainer


def grpo_callbacks(ctx) -> list[TrainerCallback]:
    """The shared callbacks, with the metrics.jsonl writer swapped for one that keeps the GRPO numbers."""
    from tunesmith.train.common import standard_callbacks

    metrics = GRPOMetricsCallback(ctx.run)
    swap = {MetricsCallback: metrics, RichProgressCallback: GRPOProgressCallback(metrics)}
    return [next((new for kind, new in swap.items() if isinstance(cb, kind)), cb) for cb in standard_callbacks(ctx)]


class GRPOProgressCallback(RichProgressCallback):
    """The shared progress bar, showing the mean reward and completion length instead of the loss."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs or "reward" not in logs:
            return
        info = f"reward {logs['reward']:.3f} ± {logs.get('reward_std', 0.0):.3f}"
        if "completions/mean_length" in logs:
            info += f" | length {logs['completions/mean_length']:.0f}"
        self.progress.update(self.task, info=info)


def _check_group_size(config: Config) -> None:
    train, grpo = config.train, config.grpo
    if (train.batch_size * train.grad_accum) % grpo.num_generations:
        raise ConfigError(
            f"train.batch_size x train.grad_accum ({train.batch_size} x {train.grad_accum}) must be a multiple of "
            f"grpo.num_generations ({grpo.num_generations}): each step scores whole groups of completions",
            hint=f"e.g. train.batch_size: {grpo.num_generations} (one prompt per step) or a multiple of it",
        )


def _check_enough_prompts(prompts: int, kwargs: dict, generations: int) -> None:
    """TRL drops an incomplete generation batch, so fewer prompts than one step needs would train 0 steps."""
    per_step = kwargs["per_device_train_batch_size"] * kwargs["gradient_accumulation_steps"] // generations
    if prompts < per_step:
        raise ConfigError(
            f"{prompts} training prompts are fewer than one GRPO step uses ({per_step} = batch_size x grad_accum / "
            f"num_generations), so no step would run",
            hint="add data, or lower train.batch_size / train.grad_accum",
        )


def preflight_rewards(rewards: list[Reward], rows: list[dict], reference_column: str) -> None:
    """Score the reference answers once, so a broken reward fails before the model loads, not at step 1."""
    sample = rows[:2]
    probe = [str(row.get(reference_column, "")) for row in sample]
    for reward in rewards:
        try:
            reward(probe, **reward_columns(sample))
        except RewardError as exc:
            raise TrainingError(exc.message, hint="try the rewards first: tunesmith rewards dry-run CONFIG") from None


class GRPOMetricsCallback(MetricsCallback):
    """metrics.jsonl rows with the GRPO numbers: each reward's mean/std, total reward, KL, completion length."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "train_runtime" in logs:  # the end-of-training summary, not a step
            return
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        row.update({out: logs[key] for key, out in GRPO_METRIC_KEYS.items() if key in logs})
        row.update({key: value for key, value in logs.items() if key.startswith("rewards/")})
        if "loss" in logs:
            row["tokens_per_s"] = self._tokens_per_s(state)
            row["tokens"] = state.num_input_tokens_seen
        if len(row) > 2 and state.is_world_process_zero:
            with self.run.metrics.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


@dataclass
class GRPOTrainResult(TrainResult):
    """TrainResult plus the mean rewards of the first and last logged steps."""

    rewards: dict = field(default_factory=dict)

    def summary(self) -> str:
        lines = super().summary().splitlines()
        if "reward_first" in self.rewards:
            # GRPO's loss is ~0 by construction (group-normalised advantages); the reward is what moves.
            reward = f"  mean reward {self.rewards['reward_first']:.3f} (first steps) -> {self.rewards['reward_last']:.3f} (last steps)"
            lines = [reward if line.startswith("  train loss") else line for line in lines]
        return "\n".join(lines)


def reward_trend(run: RunDir, rewards: list[Reward], window: int = 10) -> dict[str, float]:
    """Mean total and per-reward scores over the first and the last `window` logged steps."""
    rows = [r for r in run.read_metrics() if "reward" in r]
    if not rows:
        return {}
    first, last = rows[:window], rows[-window:]
    out = {"reward_first": _mean(first, "reward"), "reward_last": _mean(last, "reward")}
    for reward in rewards:
        key = f"rewards/{reward.name}/mean"
        out[f"{reward.name}_first"], out[f"{reward.name}_last"] = _mean(first, key), _mean(last, key)
    return out


def load_policy(ctx) -> None:
    """Set ctx.tokenizer and ctx.model (trainable): train.init_from's run continued, else the base with new adapters."""
    from tunesmith.model.adapters import add_adapters, continue_from_run
    from tunesmith.train.common import activation_checkpointing
    from tunesmith.model.base import load_base_model, tokenizer_for_run

    config = ctx.config
    ctx.tokenizer = tokenizer_for_run(config, ctx.base_model)
    base = load_base_model(config, ctx.base_model, ctx.plan)
    wrap = continue_from_run if config.train.init_from else add_adapters
    ctx.model = wrap(base, config, activation_checkpointing(ctx))
    ctx.model.config.use_cache = False
    set_seed(config.run.seed)


def with_grpo_eval_metrics(config: Config) -> Config:
    """A numeric_match (json_match) reward adds the numeric (json) eval metric, so eval reports it before/after."""
    names = {r.name for r in config.grpo.rewards}
    wanted = [m for m, reward in (("numeric", "numeric_match"), ("json", "json_match")) if reward in names and m not in config.eval.metrics]
    if not wanted:
        return config
    config = config.model_copy(deep=True)
    config.eval.metrics = [*config.eval.metrics, *wanted]
    return config


def _result(ctx, trainer, rewards: list[Reward], seconds: float) -> GRPOTrainResult:
    losses = [row["loss"] for row in ctx.run.read_metrics() if "loss" in row]
    return GRPOTrainResult(
        run_dir=ctx.run.root, final_dir=ctx.run.final, steps=trainer.state.global_step,
        train_loss=losses[-1] if losses else None, best_val_loss=None,
        tokens=int(trainer.state.num_input_tokens_seen), seconds=seconds, rewards=reward_trend(ctx.run, rewards),
    )


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return sum(values) / len(values) if values else float("nan")
