"""Trainer wiring shared by SFT and GRPO: TrainingArguments fields, callbacks, launch checks, failures.

kwargs = common_training_kwargs(ctx)            # pass to TrainingArguments / trl.GRPOConfig
args = GRPOConfig(**kwargs, **grpo_specific)
check_launch(args)                              # refuse torchrun on CPU without DDP
trainer = ...(args=args, callbacks=standard_callbacks(ctx))
run_trainer(trainer, ctx)                       # resume, NaN / OOM messages
"""

from __future__ import annotations

import os
import pickle

from tunesmith.errors import TrainingError
from tunesmith.plan.measure import MeasureCallback
from tunesmith.train.callbacks import (
    BestCallback,
    CheckpointCallback,
    FirstStepCallback,
    MetricsCallback,
    RichProgressCallback,
    TrackerRunCallback,
    truncate_metrics,
)
from tunesmith.train.disk import disk_full_error, is_failed_write
from tunesmith.train.distributed import decoder_layer_classes, distributed_kwargs, is_sharded
from tunesmith.train.interrupt import InterruptCallback, raise_if_interrupted, restore_signal_handlers
from tunesmith.train.prepare import RunContext, activation_checkpointing, world_size


class NonFiniteLoss(Exception):
    """Raised inside the training step when the loss is NaN or infinite."""


def optimizer_name(ctx: RunContext) -> str:
    choice = ctx.config.train.optimizer
    if choice != "auto":
        return choice
    if is_sharded(ctx.config, world_size()):  # bitsandbytes' paged optimizer does not see sharded parameters
        return "adamw_torch"
    if ctx.config.train.mode == "qlora" and ctx.plan.device == "cuda":
        return "paged_adamw_8bit"
    if ctx.plan.device in ("cpu", "cuda"):
        # one kernel for all tensors (transformers' own default): 5x faster steps than the per-tensor loop on
        # CPU (0.75 vs 4.1 ms for a LoRA's 84 tensors), parameters within 1.5e-8 of it after 50 steps. An
        # earlier DPO test that failed with it was seed luck at lr 1e-2 (tests/e2e/test_preference.py).
        return "adamw_torch_fused"
    return "adamw_torch"  # MPS: not measured here


def trainable_parameters(model) -> dict:
    """{'trainable', 'total', 'share', 'text'}: counted by peft where it can (4-bit weights count at full size)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    share = trainable / total if total else 0.0
    return {"trainable": trainable, "total": total, "share": share, "text": f"{trainable:,} of {total:,} ({share:.2%})"}


def report_trainable(ctx: RunContext, model) -> dict:
    """Print the trainable-parameter count at start and record it in manifest.json."""
    from tunesmith.train.prepare import write_manifest

    counts = trainable_parameters(model)
    print(f"trainable parameters: {counts['text']}")
    write_manifest(ctx, trainable_parameters=counts)
    return counts


def common_training_kwargs(ctx: RunContext, has_val: bool = True) -> dict:
    """TrainingArguments fields from the config: schedule, precision by device, checkpoints, logging, tracking."""
    t, plan = ctx.config.train, ctx.plan
    eval_steps = t.eval_steps or t.save_steps
    return dict(
        output_dir=str(ctx.run_dir.checkpoints),  # checkpoint-N here is the temporary name; see CheckpointCallback
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        # transformers 5: an int is a number of steps, a float in [0, 1) a ratio of all steps
        warmup_steps=t.warmup_steps if t.warmup_steps is not None else t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=optimizer_name(ctx),
        bf16=plan.precision == "bf16",
        fp16=plan.precision == "fp16",
        use_cpu=plan.device == "cpu",  # on CPU this also makes torchrun real DDP (gloo), not N copies
        activation_checkpointing=activation_checkpointing(ctx),
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,
        eval_strategy="steps" if has_val and t.eval_during_training else "no",
        eval_steps=eval_steps,
        save_strategy="steps" if t.save_checkpoints else "no",
        save_steps=t.save_steps,
        save_total_limit=None,
        report_to=_external_trackers(ctx) or "none",
        run_name=ctx.config.run.name,
        seed=ctx.config.run.seed,
        data_seed=ctx.config.run.seed,
        dataloader_pin_memory=plan.device == "cuda",
        dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False,
        restore_callback_states_from_checkpoint=True,
        **distributed_kwargs(ctx.config, plan, decoder_layer_classes(ctx.model), world_size()),
    )


def _external_trackers(ctx: RunContext) -> list[str]:
    """wandb / mlflow as transformers integrations (TensorBoard is ours, writing to run/tensorboard); each
    checked here, before training, so one that cannot start stops the run or is dropped (tracking.on_error)."""
    from tunesmith.tracking import usable_trackers

    return usable_trackers(ctx.config, ctx.run_dir.root)


def standard_callbacks(ctx: RunContext) -> list:
    """metrics.jsonl, rich progress, atomic step-N checkpoints, best/ + early stopping, TensorBoard."""
    metrics = MetricsCallback(ctx.run_dir)
    callbacks = [
        metrics,
        RichProgressCallback(metrics),
        CheckpointCallback(ctx.run_dir, ctx.config.train.save_total_limit),
        BestCallback(ctx.run_dir, ctx.config.train.early_stopping_patience),
        InterruptCallback(save=ctx.config.train.save_checkpoints),
        MeasureCallback(ctx.run_dir, ctx.plan.device),  # measured peak memory and s/step, next to plan.json
        FirstStepCallback(ctx.run_dir),
    ]
    tracking = ctx.config.tracking
    if tracking.project:
        os.environ.setdefault("WANDB_PROJECT", tracking.project)
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", tracking.project)
    if "tensorboard" in tracking.report_to:
        callbacks.append(_tensorboard_callback(ctx))
    if any(t in tracking.report_to for t in ("wandb", "mlflow")):
        callbacks.append(TrackerRunCallback(ctx.run_dir, _flat_config(ctx.config)))
    return callbacks


def _flat_config(config) -> dict:
    """The config as dotted keys (train.learning_rate: 0.0002), for a tracker's params."""
    from tunesmith.config.load import config_to_dict

    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    walk("", config_to_dict(config))
    return flat


def _tensorboard_callback(ctx: RunContext):
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(ctx.run_dir.tensorboard)))


def check_launch(args, launched: int | None = None) -> None:
    """Refuse a multi-process launch that would not synchronise (each process would train its own copy)."""
    launched = world_size() if launched is None else launched
    if launched > 1 and args.world_size != launched:
        raise TrainingError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but training is not distributed "
            f"(world size {args.world_size}): every process would silently train its own copy",
            hint="on CPU set train.device: cpu (tunesmith then passes use_cpu for DDP over gloo), or launch one process",
        )


def run_trainer(trainer, ctx: RunContext):
    """trainer.train(), resuming from ctx.resume_from, turning NaN loss and out-of-memory into clear errors."""
    import torch

    resume = str(ctx.resume_from) if ctx.resume_from else None
    if ctx.resume_from or ctx.run_dir.metrics.exists():  # a resume drops the lines logged after its checkpoint
        truncate_metrics(ctx.run_dir, int(ctx.resume_from.name[5:]) if ctx.resume_from else 0)
    try:
        output = trainer.train(resume_from_checkpoint=resume)
    except NonFiniteLoss as exc:
        raise TrainingError(
            _nan_message(ctx, str(exc)),
            hint="lower train.learning_rate, keep train.max_grad_norm > 0, or use precision fp32/bf16 instead of fp16",
        ) from None
    except torch.OutOfMemoryError:
        raise TrainingError("out of memory on " + ctx.plan.device, hint=oom_hint(ctx)) from None
    except RuntimeError as exc:
        if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
            raise TrainingError(f"out of memory on {ctx.plan.device}", hint=oom_hint(ctx)) from None
        if is_failed_write(exc):
            raise disk_full_error(exc, ctx.run_dir) from None
        raise
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) met a pickle that is more than tensors
        reason = (str(exc).strip().splitlines() or ["UnpicklingError"])[0][:200]
        raise TrainingError(
            f"{ctx.resume_from}: a checkpoint file holds objects other than tensors; it was not loaded ({reason})",
            hint="this checkpoint was not written by tunesmith or was tampered with; "
            "delete it to resume from an earlier one",
        ) from None
    except Exception as exc:  # noqa: BLE001 - only a failed write is turned into a user error; the rest re-raises
        if is_failed_write(exc):
            raise disk_full_error(exc, ctx.run_dir) from None
        raise
    finally:
        restore_signal_handlers(trainer)
    raise_if_interrupted(trainer, ctx.run_dir, _latest(ctx))
    return output


def _latest(ctx: RunContext):
    return ctx.run_dir.latest_checkpoint()


def _nan_message(ctx: RunContext, what: str) -> str:
    last = ctx.run_dir.latest_checkpoint()
    kept = (
        f"the last good checkpoint is kept at {last} (continue with --resume)"
        if last
        else "no checkpoint was written before it"
    )
    return f"training stopped: {what}; {kept}"


def oom_hint(ctx: RunContext) -> str:
    """Two or three settings that lower memory, with values computed from the current config."""
    t, d = ctx.config.train, ctx.config.data
    tips = []
    if t.batch_size > 1:
        tips.append(
            f"--set train.batch_size={max(1, t.batch_size // 2)} train.grad_accum={t.grad_accum * 2} (same effective batch)"
        )
    if d.max_length > 256:
        tips.append(f"--set data.max_length={d.max_length // 2}")
    if not activation_checkpointing(ctx):
        tips.append("--set train.activation_checkpointing=on")
    if t.mode != "qlora" and ctx.plan.device == "cuda":
        tips.append("--set train.mode=qlora")
    return "try: " + "; or ".join(tips) if tips else "use a smaller model"
