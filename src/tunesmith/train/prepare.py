"""Shared run setup for every training method (SFT and GRPO): run directory, data, base model, manifest.

A method's entry point reads:

    ctx = prepare_run(config, resume=resume)   # run dir, splits saved, config.yaml, manifest start
    load_trainable_model(ctx)                  # ctx.tokenizer, ctx.model (adapters added or init_from continued)
    ...train ctx.model on ctx.splits, writing checkpoints under ctx.run_dir.checkpoints...
    finish_run(ctx, summary)                                 # manifest end time + summary, printed next steps

Layout and rules:
- `runs/<name>/` is refused when it already holds a run (checkpoints or final/) unless `run.overwrite`
  (wiped first) or `resume=True` (continues from `RunDir.latest_checkpoint()`). A `--smoke` config
  (config/smoke.py) names `runs/<name>-smoke/` with run.overwrite, so it is replaced every time.
- On resume the saved `data/*.jsonl` splits and the built `base_model/` are reused, so the data order is the same.
- `tiny:qwen2` / `tiny:llama` builds a tiny model into `base_model/` from the run's own training text.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunesmith.config.load import save_config
from tunesmith.config.schema import Config
from tunesmith.data.example import Example
from tunesmith.data.splits import prepare_splits
from tunesmith.errors import ConfigError, TrainingError
from tunesmith.model.adapters import trainable_model
from tunesmith.model.base import load_base_model, resolve_base_model, tokenizer_for_run
from tunesmith.model.device import DevicePlan, plan_device
from tunesmith.run_dir import Manifest, RunDir, is_main_process, read_jsonl, write_jsonl
from tunesmith.run_lock import LOCK_NAME, lock_run_dir
from tunesmith.train.distributed import is_sharded

SPLITS = ("train", "val", "test")
PACKAGES = ("tunesmith", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "tokenizers")


@dataclass
class RunContext:
    """Everything a training method needs, prepared the same way for SFT and GRPO."""

    config: Config
    run_dir: RunDir
    splits: dict[str, list[Example]]
    base_model: str  # loadable path or hub id (what manifest.json records)
    plan: DevicePlan
    resume_from: Path | None = None  # the checkpoint to continue from
    tokenizer: Any = None
    model: Any = None  # the base model, not yet adapted
    started: float = field(default_factory=time.time)


def prepare_run(config: Config, resume: bool = False) -> RunContext:
    """Create or reopen the run directory, save data + config, build/resolve the base (nothing loaded yet)."""
    run = open_run_dir(config, resume)
    resume_from = resume_checkpoint(run) if resume else None
    splits = _splits_for_run(config, run, resume)
    plan = plan_device(config.train.device, config.train.precision)
    base = resolve_base_model(config, run, splits["train"])
    if is_main_process():
        save_config(config, run.config_file)
    ctx = RunContext(config, run, splits, base, plan, resume_from)
    write_manifest(ctx, start=True)
    return ctx


def load_trainable_model(ctx: RunContext) -> None:
    """Set ctx.tokenizer and ctx.model: the base loaded for training and made trainable (model/adapters.py)."""
    ctx.tokenizer = tokenizer_for_run(ctx.config, ctx.base_model)
    base = load_base_model(ctx.config, ctx.base_model, ctx.plan)
    sharded = is_sharded(ctx.config, world_size())  # FSDP / ZeRO: one dtype per shard group (train/distributed.py)
    ctx.model = trainable_model(base, ctx.config, activation_checkpointing(ctx), sharded=sharded)
    from tunesmith.train.trainer_setup import report_trainable

    report_trainable(ctx, ctx.model)


def activation_checkpointing(ctx: RunContext) -> bool:
    choice = ctx.config.train.activation_checkpointing
    # Memory is the limit on GPUs and Apple's unified memory alike; on CPU recomputation only costs time.
    return ctx.plan.device in ("cuda", "mps") if choice == "auto" else choice == "on"


def open_run_dir(config: Config, resume: bool) -> RunDir:
    """The run directory, created empty (new run), wiped (run.overwrite) or kept (resume)."""
    run = RunDir.of(Path(config.run.output_dir) / config.run.name)
    if not is_main_process():  # under torchrun / accelerate only rank 0 writes the run directory
        return run
    lock_run_dir(run.root)  # before looking inside: a second process must not wipe or mix into a live run
    used = run.final.exists() or any(run.checkpoints.glob("step-*")) or _has_metrics(run)
    if resume:
        if not run.config_file.exists():
            raise ConfigError(f"--resume: {run.root} holds no run to continue", hint="start it without --resume")
        return run
    if used and not config.run.overwrite:
        what = "a finished run" if run.final.exists() else "an unfinished run"
        raise ConfigError(
            f"{run.root} already holds {what}",
            hint="continue it with --resume, pick another run.name, or set run.overwrite: true to replace it",
        )
    if used or run.config_file.exists():
        clear_run_dir(run.root)
    return run


def _has_metrics(run: RunDir) -> bool:
    """Whether a run logged training steps here (a run that crashed before its first checkpoint did)."""
    return run.metrics.exists() and run.metrics.stat().st_size > 0


def clear_run_dir(root: Path) -> None:
    """Empty a run directory but keep its lock file, which this process holds."""
    for entry in root.iterdir():
        if entry.name == LOCK_NAME:
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def resume_checkpoint(run: RunDir) -> Path | None:
    """The checkpoint --resume continues from; an error when checkpoints exist but none is intact."""
    found = run.latest_checkpoint()
    if found is None and any(run.checkpoints.glob("step-*")):
        raise TrainingError(
            f"{run.checkpoints}: every checkpoint is damaged, there is nothing intact to resume from",
            hint="start the run again with --set run.overwrite=true",
        )
    return found


def _splits_for_run(config: Config, run: RunDir, resume: bool) -> dict[str, list[Example]]:
    """The processed splits: reread on resume (same data, same order), else prepared and saved."""
    if resume and run.split_file("train").exists():
        return {s: read_jsonl(run.split_file(s)) if run.split_file(s).exists() else [] for s in SPLITS}

    splits = prepare_splits(config)
    if not splits["train"]:
        raise ConfigError("the training split is empty", hint="check data.sources and data.split (val + test share)")
    if is_main_process():
        for name in SPLITS:
            write_jsonl(run.split_file(name), splits[name])
    return splits


def write_manifest(ctx: RunContext, start: bool = False, **extra: Any) -> None:
    """Write manifest.json: versions, git commit, data fingerprints, seed, device, times (+ `extra`)."""
    if not is_main_process():
        return
    manifest = ctx.run_dir.read_manifest() if not start or ctx.resume_from else Manifest()
    if start:
        manifest.update(
            method=ctx.config.method,
            mode=ctx.config.train.mode,
            base_model=ctx.base_model,
            seed=ctx.config.run.seed,
            device=ctx.plan.device,
            precision=ctx.plan.precision,
            packages=package_versions(),
            python=platform.python_version(),
            git_commit=git_commit(),
            data=data_fingerprints(ctx.run_dir),
            trust_remote_code=ctx.config.model.trust_remote_code,  # model code from the hub ran only when true
        )
        if ctx.config.train.init_from:
            manifest.init_from = ctx.config.train.init_from
        if manifest.system_prompt is None:  # kept on resume: the prompt the run started with
            from tunesmith.data.splits import system_prompt_of

            manifest.system_prompt = system_prompt_of(ctx.config)
        manifest.start_time = manifest.start_time or _now()
        if ctx.resume_from:
            entry = {"time": _now(), "from": str(ctx.resume_from), "checkpoint_step": int(ctx.resume_from.name[5:])}
            manifest.resumes = [*(manifest.resumes or []), entry]
    manifest.update(**extra)
    ctx.run_dir.write_manifest(manifest)


def finish_run(ctx: RunContext, **summary: Any) -> None:
    """Record the end time and the run summary in manifest.json."""
    write_manifest(ctx, end_time=_now(), **summary)


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current commit of the git checkout we run in (None outside git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def data_fingerprints(run: RunDir) -> dict[str, dict]:
    """sha256 and row count of each saved split."""
    out = {}
    for split in SPLITS:
        path = run.split_file(split)
        if path.exists():
            data = path.read_bytes()
            out[split] = {"sha256": hashlib.sha256(data).hexdigest(), "rows": data.count(b"\n")}
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))
