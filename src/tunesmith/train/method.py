"""The training-method interface: every method is one module behind four steps, run by `run_method`.

`tunesmith.train()` (train/api.py) picks the method by `config.method` from one table, `METHODS`, and runs:

    ctx = method.prepare(config, resume)                    # run directory, splits, tokenizer, trainable model
    trainer = method.build_trainer(ctx)                     # a transformers / TRL trainer, not yet trained
    output = method.train(trainer, ctx)                     # trainer.train(), resuming; NaN / OOM as clear errors
    result = method.finish(ctx, trainer, output, seconds)   # final/ saved, manifest summary, a TrainResult

Adding a method NAME (e.g. dpo):
1. `src/tunesmith/train/NAME.py` defines `class NAMEMethod(TrainingMethod)` with `name = "NAME"` and ends with
   `METHOD = NAMEMethod`. It may import torch / transformers / trl at its top: the module is imported only when
   that method trains (`tunesmith --help` stays free of torch).
2. One line in `METHODS` (train/api.py): `"NAME": "tunesmith.train.NAME"` (several methods sharing one module name
   their classes as `"module:Class"`, e.g. dpo / orpo / kto / simpo in train/preference.py).
3. `method: Literal[...]` in config/schema.py accepts NAME (a test checks it names exactly the table's methods),
   plus a config section for the method's own settings if it has any.

What each step may rely on and must do:
- `prepare(config, resume) -> RunContext`. Default: `prepare_run` (opens runs/<name>/, saves data/*.jsonl,
  config.yaml and the manifest's start) then `load_trainable_model` (ctx.tokenizer; ctx.model = the base with
  new adapters, or train.init_from's run continued). Override it to check what needs no model first (GRPO
  builds and tries its rewards before loading), or to change the config (call super().prepare with it).
  A method instance serves one run, so it may keep what later steps need on `self`.
- `build_trainer(ctx)` (required). Build the trainer's arguments from `common_training_kwargs(ctx, has_val)`
  (schedule, precision, checkpoints, logging, trackers), call `check_launch(args)`, pass
  `callbacks=standard_callbacks(ctx)` (metrics.jsonl, progress, atomic step-N checkpoints, best/), and
  `trainer.remove_callback(PrinterCallback)`. Extra manifest fields: `write_manifest(ctx, key=value)`.
- `train(trainer, ctx)`. Default: `run_trainer(trainer, ctx)` with the fused RMSNorm and rotary
  (model/fused_norm_rope.py); returns transformers' TrainOutput.
- `finish(ctx, trainer, output, seconds) -> TrainResult`. Default: saves trainer.model + tokenizer to final/
  atomically, records steps / tokens / last train loss in manifest.json (`finish_run`) and returns a
  TrainResult; override `result(ctx, trainer, output, seconds)` to return a richer one.
Write run files only through ctx.run_dir (tunesmith/run_dir.py): final/ must hold a loadable model or peft
adapter plus the tokenizer, so that eval, report, generate and export work on any method's run unchanged.
"""

from __future__ import annotations

import time
from typing import Any

from tunesmith.config.schema import Config
from tunesmith.model.fused_norm_rope import fused_norm_and_rope
from tunesmith.train.callbacks import save_model_atomically
from tunesmith.train.prepare import RunContext, finish_run, load_trainable_model, prepare_run
from tunesmith.train.result import TrainResult
from tunesmith.train.trainer_setup import run_trainer


class TrainingMethod:
    """One training method: prepare -> build_trainer -> train -> finish (see the module docstring)."""

    name: str = ""

    def prepare(self, config: Config, resume: bool) -> RunContext:
        ctx = prepare_run(config, resume=resume)
        load_trainable_model(ctx)
        return ctx

    def build_trainer(self, ctx: RunContext):
        raise NotImplementedError(f"training method {self.name!r} must define build_trainer")

    def train(self, trainer, ctx: RunContext):
        with fused_norm_and_rope(trainer.model):  # CPU fp32 only, checked against the originals first
            return run_trainer(trainer, ctx)

    def finish(self, ctx: RunContext, trainer, output, seconds: float) -> TrainResult:
        save_model_atomically(trainer.model, ctx.tokenizer, ctx.run_dir.final)
        result = self.result(ctx, trainer, output, seconds)
        finish_run(ctx, **self.summary(result))
        return result

    def result(self, ctx: RunContext, trainer, output, seconds: float) -> TrainResult:
        return base_result(ctx, trainer, seconds)

    def summary(self, result: TrainResult) -> dict[str, Any]:
        """What manifest.json records at the end of the run."""
        return {"steps": result.steps, "tokens": result.tokens, "train_loss": result.train_loss}


def run_method(method: TrainingMethod, config: Config, resume: bool = False) -> TrainResult:
    """Run the four steps of `method` on `config`; `seconds` of the result counts all of them."""
    started = time.perf_counter()
    ctx = method.prepare(config, resume)
    trainer = method.build_trainer(ctx)
    output = method.train(trainer, ctx)
    return method.finish(ctx, trainer, output, time.perf_counter() - started)


def base_result(ctx: RunContext, trainer, seconds: float) -> TrainResult:
    """The numbers every method reports: steps, real tokens, the last logged train loss, where final/ is."""
    losses = [row["loss"] for row in ctx.run_dir.read_metrics() if "loss" in row]
    return TrainResult(
        run_dir=ctx.run_dir.root,
        final_dir=ctx.run_dir.final,
        steps=trainer.state.global_step,
        train_loss=losses[-1] if losses else None,
        best_val_loss=None,
        tokens=int(trainer.state.num_input_tokens_seen),
        seconds=seconds,
        model=trainer.model,
    )
