"""GRPO training on TRL's GRPOTrainer: our rewards, our run directory, optionally from an SFT run's adapter.

The method (train/method.py) reads prepare -> build_trainer -> train -> finish, like SFT: `prepare` builds and
tries the rewards, then `prepare_run` (shared with SFT) makes the run directory and saves the splits, then the
trainable model loads; the prompts are the training conversations minus their last
assistant turn (rendered by TRL with the run's chat template); the rewards come from `grpo.rewards`.
TRL logs each reward's mean/std, the total reward, KL (when beta > 0) and completion lengths; the metrics
callback here writes them to metrics.jsonl, TensorBoard gets the same numbers.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import PrinterCallback, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from tunesmith.config.schema import Config
from tunesmith.errors import ConfigError, TrainingError
from tunesmith.model.device import plan_device
from tunesmith.rewards.build import Reward, RewardError, build_rewards, to_trl
from tunesmith.rewards.prompts import grpo_rows, reward_columns
from tunesmith.run_dir import RunDir
from tunesmith.train.callbacks import MetricsCallback, RichProgressCallback
from tunesmith.train.distributed import use_fsdp_on_cpu
from tunesmith.train.method import TrainingMethod, base_result
from tunesmith.train.prepare import RunContext, load_trainable_model, prepare_run
from tunesmith.train.result import TrainResult
from tunesmith.train.trainer_setup import check_launch, common_training_kwargs, standard_callbacks

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


class GRPOMethod(TrainingMethod):
    """method: grpo. Rewards are built and tried on the reference answers before the model loads."""

    name = "grpo"
    rewards: list[Reward]
    rows: list[dict]

    def prepare(self, config: Config, resume: bool) -> RunContext:
        config = with_grpo_eval_metrics(config)
        self.rewards = build_rewards(config.grpo, base_dir=Path.cwd())
        check_vllm(config.grpo, plan_device(config.train.device, config.train.precision).device)
        ctx = prepare_run(config, resume=resume)
        self.rows = grpo_rows(ctx.splits["train"], config)
        preflight_rewards(self.rewards, self.rows, config.grpo.reference_column)
        load_trainable_model(ctx)
        return ctx

    def build_trainer(self, ctx: RunContext) -> GRPOTrainer:
        """A GRPOTrainer over the prompt rows with our rewards and the shared run-directory callbacks."""
        _check_group_size(ctx.config)
        grpo = ctx.config.grpo
        kwargs = common_training_kwargs(ctx, has_val=False)
        _check_enough_prompts(len(self.rows), kwargs, grpo.num_generations)
        args = GRPOConfig(
            **kwargs,
            num_generations=grpo.num_generations,
            max_completion_length=grpo.max_completion_length,
            temperature=grpo.temperature,
            beta=grpo.beta,
            reward_weights=[r.weight for r in self.rewards],
            **vllm_kwargs(grpo),
        )
        check_launch(args)
        trainer = GRPOTrainer(
            model=ctx.model,
            reward_funcs=[to_trl(r) for r in self.rewards],
            args=args,
            train_dataset=Dataset.from_list(self.rows),
            processing_class=ctx.tokenizer,
            callbacks=grpo_callbacks(ctx),
        )
        trainer.remove_callback(PrinterCallback)  # prints every log dict (40 GRPO keys); the progress bar shows them
        use_fsdp_on_cpu(trainer)
        return trainer

    def result(self, ctx: RunContext, trainer, output, seconds: float) -> GRPOTrainResult:
        result = base_result(ctx, trainer, seconds)
        return GRPOTrainResult(**vars(result), rewards=reward_trend(ctx.run_dir, self.rewards))

    def summary(self, result: GRPOTrainResult) -> dict:
        return {**super().summary(result), "rewards": result.rewards}


def grpo_callbacks(ctx) -> list[TrainerCallback]:
    """The shared callbacks, with the metrics.jsonl writer swapped for one that keeps the GRPO numbers."""
    metrics = GRPOMetricsCallback(ctx.run_dir)
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


def check_vllm(grpo, device: str) -> None:
    """grpo.use_vllm needs a CUDA device and the vllm package; say so before anything loads."""
    if not grpo.use_vllm:
        return
    if device != "cuda":
        raise ConfigError(
            f"grpo.use_vllm: vLLM generates on CUDA GPUs only; this run is on {device}",
            hint="set grpo.use_vllm: false (completions then come from transformers' generate)",
        )
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "grpo.use_vllm: the vllm package is not installed",
            hint="pip install vllm (a version TRL supports), or set grpo.use_vllm: false",
        )


def vllm_kwargs(grpo) -> dict:
    """TRL's GRPOConfig settings for vLLM generation in the training process (colocate), or none."""
    if not grpo.use_vllm:
        return {}
    return {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": grpo.vllm_gpu_memory_utilization}


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


def with_grpo_eval_metrics(config: Config) -> Config:
    """A numeric_match (json_match) reward adds the numeric (json) eval metric, so eval reports it before/after."""
    names = {r.name for r in config.grpo.rewards}
    pairs = (
        ("numeric", "numeric_match"),
        ("numeric", "number_match"),
        ("numeric", "answer_check"),
        ("json", "json_match"),
    )
    wanted = list(dict.fromkeys(m for m, reward in pairs if reward in names and m not in config.eval.metrics))
    if not wanted:
        return config
    config = config.model_copy(deep=True)
    config.eval.metrics = [*config.eval.metrics, *wanted]
    return config


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r]
    return sum(values) / len(values) if values else float("nan")


METHOD = GRPOMethod
