"""Shared run setup for every training method (SFT and GRPO): run directory, data, base model, manifest.

A method's entry point reads:

    ctx = prepare_run(config, smoke=smoke, resume=resume)   # run dir, splits, tokenizer, base model
    ...train ctx.model on ctx.splits, writing checkpoints under ctx.run.checkpoints...
    finish_run(ctx, summary)                                 # manifest end time + summary, printed next steps

Layout and rules:
- `runs/<name>/` is refused when it already holds a run (checkpoints or final/) unless `run.overwrite`
  (wiped first) or `resume=True` (continues from `latest_checkpoint`). `--smoke` writes `runs/<name>-smoke/`,
  replaced every time, so a smoke test never touches the real run.
- On resume the saved `data/*.jsonl` splits and the built `base_model/` are reused, so the data order is the same.
- `tiny:qwen2` / `tiny:llama` builds a tiny model into `base_model/` from the run's own training text.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunesmith.config.load import save_config
from tunesmith.config.schema import Config
from tunesmith.errors import ConfigError
from tunesmith.model.device import DevicePlan, plan_device
from tunesmith.model.load import TINY_PREFIX, is_tiny, load_model, load_tokenizer
from tunesmith.train.run_dir import RunDir, is_main_process, read_jsonl, write_jsonl

SPLITS = ("train", "val", "test")
PACKAGES = ("tunesmith", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "tokenizers")
SMOKE_VAL_EXAMPLES = 4


@dataclass
class RunContext:
    """Everything a training method needs, prepared the same way for SFT and GRPO."""

    config: Config
    run: RunDir
    splits: dict[str, list[dict]]
    base_model: str  # loadable path or hub id (what manifest.json records)
    plan: DevicePlan
    smoke: bool = False
    resume_from: Path | None = None  # the checkpoint to continue from
    tokenizer: Any = None
    model: Any = None  # the base model, not yet adapted
    started: float = field(default_factory=time.time)


def prepare_run(config: Config, smoke: bool = False, resume: bool = False, load: bool = True) -> RunContext:
    """Create or reopen the run directory, save data + config, build/resolve the base, load tokenizer + model."""
    run = open_run_dir(config, smoke, resume)
    resume_from = latest_checkpoint(run) if resume else None
    splits = _splits_for_run(config, run, smoke, resume)
    plan = plan_device(config.train.device, config.train.precision)
    base = resolve_base_model(config, run, splits["train"])
    if is_main_process():
        save_config(config, run.config)
    ctx = RunContext(config, run, splits, base, plan, smoke, resume_from)
    if load:
        ctx.tokenizer = tokenizer_for_run(config, base)
        ctx.model = load_base_model(config, base, plan)
    write_manifest(ctx, start=True)
    return ctx


def open_run_dir(config: Config, smoke: bool, resume: bool) -> RunDir:
    """The run directory, created empty (new run), wiped (overwrite / smoke) or kept (resume)."""
    name = f"{config.run.name}-smoke" if smoke else config.run.name
    run = RunDir.of(Path(config.run.output_dir) / name)
    if not is_main_process():  # under torchrun / accelerate only rank 0 writes the run directory
        return run
    used = run.final.exists() or any(run.checkpoints.glob("step-*"))
    if resume:
        if not run.config.exists():
            raise ConfigError(f"--resume: {run.root} holds no run to continue", hint="start it without --resume")
        return run
    if used and not (config.run.overwrite or smoke):
        what = "a finished run" if run.final.exists() else "an unfinished run with checkpoints"
        raise ConfigError(
            f"{run.root} already holds {what}",
            hint="continue it with --resume, pick another run.name, or set run.overwrite: true to replace it",
        )
    if run.root.exists() and (used or run.config.exists()):
        shutil.rmtree(run.root)
    run.root.mkdir(parents=True, exist_ok=True)
    return run


def latest_checkpoint(run: RunDir) -> Path | None:
    """The newest complete checkpoint (`checkpoints/step-N/`; incomplete ones never get that name)."""
    steps = [p for p in run.checkpoints.glob("step-*") if p.name[5:].isdigit() and (p / "trainer_state.json").exists()]
    return max(steps, key=lambda p: int(p.name[5:]), default=None)


def _splits_for_run(config: Config, run: RunDir, smoke: bool, resume: bool) -> dict[str, list[dict]]:
    """The processed splits: reread on resume (same data, same order), else prepared and saved."""
    if resume and run.split_file("train").exists():
        return {s: read_jsonl(run.split_file(s)) if run.split_file(s).exists() else [] for s in SPLITS}
    from tunesmith.data.pipeline import prepare_splits

    splits = prepare_splits(config)
    if not splits["train"]:
        raise ConfigError("the training split is empty", hint="check data.sources and data.split (val + test share)")
    if smoke:
        splits = {
            "train": splits["train"][: config.train.smoke_examples],
            "val": splits["val"][:SMOKE_VAL_EXAMPLES],
            "test": splits["test"][:SMOKE_VAL_EXAMPLES],
        }
    if is_main_process():
        for name in SPLITS:
            write_jsonl(run.split_file(name), splits[name])
    return splits


def example_text(example: dict) -> str:
    """The plain text of an internal-shape example (for training a tiny tokenizer)."""
    if example.get("messages"):
        return "\n".join(str(m.get("content", "")) for m in example["messages"])
    return str(example.get("text") or "")


def resolve_base_model(config: Config, run: RunDir, train_rows: list[dict]) -> str:
    """The loadable base: train.init_from's (its base under its adapter, or its full weights); else the model,
    where `tiny:` builds (once) into run/base_model from the training text."""
    if config.train.init_from:
        from tunesmith.model.from_run import is_adapter, run_base_model_path

        source = RunDir.of(config.train.init_from)
        source.require_finished()
        return run_base_model_path(source) if is_adapter(source.final) else str(source.final)
    name = config.model.name_or_path
    if not is_tiny(name):
        return name
    target = run.base_model
    if not is_main_process():  # the build is deterministic: other ranks make their own copy, no waiting on rank 0
        target = Path(tempfile.mkdtemp(prefix=f"tunesmith-rank{os.environ.get('RANK')}-")) / "base_model"
    if not (target / "config.json").exists():
        from tunesmith.model.tiny import build_tiny_model

        shape = config.model.tiny
        texts = [example_text(row) for row in train_rows]
        build_tiny_model(
            name[len(TINY_PREFIX):], target, texts, shape.vocab_size, shape.layers, shape.hidden, shape.heads, config.run.seed
        )
    return str(run.base_model) if is_main_process() else str(target)


def tokenizer_for_run(config: Config, base: str):
    """The tokenizer a run trains with: train.init_from's (with its chat template), else the base's."""
    if config.train.init_from:
        from tunesmith.model.from_run import load_run_tokenizer as from_previous_run

        return from_previous_run(RunDir.of(config.train.init_from))
    m = config.model
    return load_tokenizer(base, m.tokenizer, m.chat_template, m.revision, m.trust_remote_code)


def load_base_model(config: Config, base: str, plan: DevicePlan):
    """The base model in the dtype the plan wants (4-bit NF4 for QLoRA), on the plan's device."""
    import torch

    from tunesmith.model.adapters import compute_dtype_for, quantization_config

    dtype = torch.float32 if config.train.mode == "full" or plan.precision == "fp32" else plan.torch_dtype
    if config.model.dtype != "auto":
        dtype = getattr(torch, config.model.dtype)
    quant, device_map = None, None
    if config.train.mode == "qlora":
        if plan.device == "mps":
            raise ConfigError(
                "train.mode 'qlora' needs CUDA or a CPU: bitsandbytes has no 4-bit kernels for Apple's MPS",
                hint="on a Mac use train.mode: lora (fp32 by default), or train.device: cpu for QLoRA on the CPU",
            )
        quant = quantization_config(config, compute_dtype_for(config, plan.precision))
        device_map = {"": plan.device if plan.device != "cuda" else torch.cuda.current_device()}
    model = load_model(
        base, dtype=dtype, revision=config.model.revision, trust_remote_code=config.model.trust_remote_code,
        attn_implementation=config.model.attn_implementation, quantization_config=quant, device_map=device_map,
    )
    return _unmark_dequantized_gguf(model)


def _unmark_dequantized_gguf(model):
    """transformers 5.24 keeps a GGUF quantizer on models whose GGUF weights it already dequantized to float,
    and the Trainer then refuses to train them ("GGUF ... do not support training"); the weights are plain."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and str(getattr(quantizer.quantization_config, "quant_method", "")).lower().endswith("gguf"):
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def write_manifest(ctx: RunContext, start: bool = False, **extra: Any) -> None:
    """Write manifest.json: versions, git commit, data fingerprints, seed, device, times (+ `extra`)."""
    if not is_main_process():
        return
    manifest = ctx.run.read_manifest() if not start or ctx.resume_from else {}
    if start:
        manifest.update(
            method=ctx.config.method, mode=ctx.config.train.mode, base_model=ctx.base_model, seed=ctx.config.run.seed,
            device=ctx.plan.device, precision=ctx.plan.precision, smoke=ctx.smoke, packages=package_versions(),
            python=platform.python_version(), git_commit=git_commit(), data=data_fingerprints(ctx.run),
        )
        if ctx.config.train.init_from:
            manifest["init_from"] = ctx.config.train.init_from
        manifest.setdefault("start_time", _now())
        if ctx.resume_from:
            manifest.setdefault("resumes", []).append({"time": _now(), "from": str(ctx.resume_from)})
    manifest.update(extra)
    ctx.run.manifest.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")


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
