"""Trainer callbacks shared by SFT and GRPO: metrics.jsonl, rich progress, atomic checkpoints, best/ + early stop.

Use them with any transformers `Trainer` (TRL's trainers included):

    callbacks=[MetricsCallback(run), RichProgressCallback(), CheckpointCallback(run, keep=3),
               BestCallback(run, patience=None)]

with `output_dir=run.checkpoints`, `save_total_limit=None` (CheckpointCallback keeps the last K) and
`disable_tqdm=True`. Real tokens are counted in `state.num_input_tokens_seen` by the trainer (SFT's
trainer counts non-pad tokens itself).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from tunesmith.checkpoint_files import write_checksums
from tunesmith.run_dir import RunDir, is_main_process

METRIC_KEYS = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "eval_loss": "eval_loss"}


def truncate_metrics(run: RunDir, last_step: int) -> None:
    """Drop metrics logged after `last_step` (a resumed run logs those steps again)."""
    rows = [r for r in run.read_metrics() if r.get("step", 0) <= last_step]
    run.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


class MetricsCallback(TrainerCallback):
    """Append one JSON row per log to metrics.jsonl: step, epoch, loss, lr, grad_norm, tokens/s, eval loss, perplexity."""

    def __init__(self, run: RunDir, extra_prefixes: tuple[str, ...] = ()):
        self.run = run
        self.extra_prefixes = extra_prefixes + tuple(f"eval_{p}" for p in extra_prefixes)  # a method's own log keys
        self.step_started = 0.0
        self.train_seconds = 0.0  # time inside training steps only (evaluation and saving excluded)
        self.last_tokens = 0
        self.tokens_per_s: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_seconds, self.last_tokens = 0.0, state.num_input_tokens_seen

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.train_seconds += time.perf_counter() - self.step_started

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        row = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        row.update({out: logs[key] for key, out in METRIC_KEYS.items() if key in logs})
        row.update(
            {key: value for key, value in logs.items() if self.extra_prefixes and key.startswith(self.extra_prefixes)}
        )
        if "loss" in logs:
            row["tokens_per_s"] = self._tokens_per_s(state)
            row["tokens"] = state.num_input_tokens_seen
        if "eval_loss" in logs:
            row["perplexity"] = _perplexity(logs["eval_loss"])
        if len(row) > 2 and state.is_world_process_zero:
            with self.run.metrics.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def _tokens_per_s(self, state) -> float:
        self.tokens_per_s = (state.num_input_tokens_seen - self.last_tokens) / max(self.train_seconds, 1e-9)
        self.train_seconds, self.last_tokens = 0.0, state.num_input_tokens_seen
        return round(self.tokens_per_s, 1)


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 50 else float("inf")


class RichProgressCallback(TrainerCallback):
    """A rich progress bar with loss, real tokens/s and ETA (replaces the tqdm bar; use disable_tqdm=True)."""

    def __init__(self, metrics: MetricsCallback | None = None):
        self.metrics = metrics
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or os.environ.get("TUNESMITH_NO_PROGRESS") == "1":
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")
        self.progress.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        parts = []
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if self.metrics is not None and self.metrics.tokens_per_s:
            parts.append(f"{self.metrics.tokens_per_s:,.0f} tok/s")
        if "eval_loss" in logs:
            parts.append(f"val {logs['eval_loss']:.4f}")
        if parts:
            self.progress.update(self.task, info=" | ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class FirstStepCallback(TrainerCallback):
    """Record in manifest.json the first step this process trains (in the last `resumes` entry when resumed).

    A resumed run must start right after its checkpoint; one that silently restarts from step 1 trains the same
    losses (training is deterministic), so only this record tells the two apart.
    """

    def __init__(self, run: RunDir):
        self.run = run
        self.recorded = False

    def on_step_begin(self, args, state, control, **kwargs):
        if self.recorded or not state.is_world_process_zero:
            return
        self.recorded = True
        manifest = self.run.read_manifest()
        if manifest.resumes:
            manifest.resumes = [*manifest.resumes[:-1], {**manifest.resumes[-1], "first_step": state.global_step + 1}]
        else:
            manifest.first_step = state.global_step + 1
        self.run.write_manifest(manifest)


class CheckpointCallback(TrainerCallback):
    """Rename the trainer's `checkpoint-N` (the temporary name) to `step-N` once complete; keep the last K."""

    def __init__(self, run: RunDir, keep: int):
        self.run = run
        self.keep = keep

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        written = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not written.exists():
            return
        write_checksums(written)  # before the rename: a published step-N always carries its checksums
        final = self.run.checkpoints / f"step-{state.global_step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(written, final)
        self._rotate()

    def _rotate(self) -> None:
        steps = sorted(
            (p for p in self.run.checkpoints.glob("step-*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:])
        )
        for old in steps[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for partial in self.run.checkpoints.glob("checkpoint-*"):  # left by a crash mid-write
            shutil.rmtree(partial, ignore_errors=True)


class BestCallback(TrainerCallback, ExportableState):
    """Save the model to best/ when validation loss improves; stop after `patience` evaluations without one."""

    def __init__(self, run: RunDir | str, patience: int | None = None, best: float | None = None, bad_evals: int = 0):
        self.run = run if isinstance(run, RunDir) else RunDir.of(run)  # a str when restored from a checkpoint
        self.patience = patience
        self.best = best
        self.bad_evals = bad_evals

    def on_evaluate(self, args, state, control, metrics=None, model=None, processing_class=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None or not math.isfinite(loss):
            return
        if self.best is None or loss < self.best:
            self.best, self.bad_evals = loss, 0
            if model is not None:  # every rank: a sharded model is gathered collectively, rank 0 writes
                save_model_atomically(model, processing_class, self.run.best)
        else:
            self.bad_evals += 1
            if self.patience and self.bad_evals >= self.patience and state.global_step < state.max_steps:
                control.should_training_stop = True
                state.log_history.append({"early_stopping": True, "step": state.global_step})

    def state(self) -> dict:
        return {
            "args": {"run": str(self.run.root), "patience": self.patience},
            "attributes": {"best": self.best, "bad_evals": self.bad_evals},
        }


def save_model_atomically(model, tokenizer, folder: Path) -> None:
    """Save model (adapter or full) + tokenizer to `folder` via a temporary folder, so it is never half-written.

    Call it on every rank: an FSDP-sharded model is first gathered into whole tensors (a collective step);
    then only rank 0 writes (under DDP the weights are the same on every rank).
    """
    from tunesmith.train.distributed import full_state_dict

    model = getattr(model, "module", model)  # DDP wrapper
    state_dict = full_state_dict(model)
    if not is_main_process():
        return
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


class TrackerRunCallback(TrainerCallback):
    """Record the W&B / MLflow run that transformers' integrations started (tracking.json) and add the
    tunesmith config to its params. Runs after the integrations' own on_train_begin (user callbacks come last)."""

    def __init__(self, run: RunDir, config_params: dict):
        self.run = run
        self.config_params = config_params

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from tunesmith.tracking import record_tracker_runs

        runs = {}
        if "mlflow" in args.report_to:
            runs["mlflow"] = self._mlflow()
        if "wandb" in args.report_to:
            runs["wandb"] = self._wandb()
        started = {k: v for k, v in runs.items() if v}
        if started:  # a tracker dropped by tracking.on_error: continue leaves no record
            record_tracker_runs(self.run.root, **started)

    def _mlflow(self) -> dict | None:
        import mlflow

        active = mlflow.active_run()
        if active is None:
            return None
        params = {f"tunesmith.{k}": str(v)[:500] for k, v in self.config_params.items()}
        items = list(params.items())
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            mlflow.log_params(dict(items[start : start + 100]))
        return {"run_id": active.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}

    def _wandb(self) -> dict | None:
        import wandb

        if wandb.run is None:
            return None
        wandb.run.config.update({"tunesmith": self.config_params}, allow_val_change=True)
        return {"run_id": wandb.run.id, "dir": str(wandb.run.dir), "mode": os.environ.get("WANDB_MODE", "online")}
