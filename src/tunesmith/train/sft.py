"""Supervised fine-tuning (full, LoRA, QLoRA) on the HF Trainer with our tokenized, loss-masked data.

Imports torch: import this module lazily (train/api.py does).

Why the HF Trainer and not TRL's SFTTrainer: the data stage already produces token ids and an
assistant-only loss mask for any chat template (no `{% generation %}` markers needed), so SFTTrainer's
chat formatting, masking and packing would be bypassed anyway; the Trainer gives us checkpoints, exact
resume (optimizer, scheduler, RNG, data position), grad accumulation with token-weighted loss, DDP and
trackers, and a padding-free collator from transformers itself.
"""

from __future__ import annotations

import time

import torch
from transformers import PrinterCallback, Trainer, TrainingArguments

from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.train.batching import Collator, real_tokens, resolve_batching, tokenize_split
from tunesmith.train.callbacks import BestCallback, save_model_atomically
from tunesmith.train.common import NonFiniteLoss, check_launch, common_training_kwargs, run_trainer, standard_callbacks
from tunesmith.train.result import TrainResult
from tunesmith.train.setup import RunContext, finish_run, write_manifest
from tunesmith.train.varlen_attention import restore_sdpa, use_varlen_attention


def run_sft(ctx: RunContext) -> TrainResult:
    """Train ctx.model on ctx.splits and write checkpoints, best/, final/ and the manifest summary."""
    started = time.perf_counter()
    config = ctx.config
    batching = resolve_batching(config.train.batching, ctx.plan.device)
    train = tokenize_split(ctx.tokenizer, ctx.splits["train"], config.data, "train")
    val = tokenize_split(ctx.tokenizer, ctx.splits["val"], config.data, "val") if ctx.splits["val"] else None
    val_set = val.dataset if val else None
    args = TrainingArguments(**common_training_kwargs(ctx, has_val=val_set is not None), train_sampling_strategy="group_by_length" if batching == "padded" else "random")
    check_launch(args)
    model = prepare_model(ctx, args.activation_checkpointing)
    attention = "per-example sdpa" if batching == "padding_free" and use_varlen_attention(model) else model.config._attn_implementation
    write_manifest(ctx, batching=batching, attention=attention, examples={"train": len(train.dataset), "skipped_no_loss": train.skipped, "truncated": train.truncated})
    trainer = TokenCountingTrainer(
        model=model, args=args, train_dataset=train.dataset, eval_dataset=val_set,
        data_collator=Collator(batching, ctx.tokenizer), processing_class=ctx.tokenizer, callbacks=standard_callbacks(ctx),
    )
    trainer.remove_callback(PrinterCallback)  # the rich bar and metrics.jsonl replace printed dicts
    output = run_trainer(trainer, ctx)
    if val_set is not None and not _evaluated_at_end(trainer):
        trainer.evaluate()
    restore_sdpa(trainer.model)
    save_model_atomically(trainer.model, ctx.tokenizer, ctx.run.final)
    result = _result(ctx, trainer, time.perf_counter() - started)
    result.train_seconds = output.metrics.get("train_runtime")
    finish_run(ctx, steps=result.steps, tokens=result.tokens, train_loss=result.train_loss, best_val_loss=result.best_val_loss)
    return result


def prepare_model(ctx: RunContext, checkpointing: bool):
    """The base model ready to train: no KV cache (keeps padding-free examples apart), adapters, seed."""
    from transformers import set_seed

    from tunesmith.model.adapters import add_adapters, continue_from_run

    model = ctx.model
    model.config.use_cache = False
    set_seed(ctx.config.run.seed)  # adapter initialisation
    if ctx.config.train.init_from:
        return continue_from_run(model, ctx.config, checkpointing)
    model = add_adapters(model, ctx.config, checkpointing)
    if checkpointing and ctx.config.train.mode == "lora":
        model.enable_input_require_grads()  # checkpointed blocks need a grad-carrying input with frozen embeddings
    return model


class TokenCountingTrainer(Trainer):
    """Counts real (non-pad) tokens, computes logits only where there is loss, stops on a NaN/inf loss."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.state.num_input_tokens_seen += real_tokens(inputs)
        if return_outputs or not _flat_batch_with_labels(inputs):
            out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        else:
            out = loss_on_trained_positions(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                out = out * self.accelerator.num_processes  # as Trainer.compute_loss does for its token-weighted loss
        loss = out[0] if return_outputs else out
        if model.training and not torch.isfinite(loss.detach()).all():
            raise NonFiniteLoss(f"the loss became {loss.item()} at step {self.state.global_step + 1}")
        return out


def _flat_batch_with_labels(inputs) -> bool:
    labels = inputs.get("labels")
    return labels is not None and labels.dim() == 2 and labels.shape[0] == 1


def loss_on_trained_positions(model, inputs, num_items_in_batch=None):
    """Causal-LM loss computing the output layer only at positions whose next token is trained.

    Equal to the model's own loss (sum over trained tokens / num_items_in_batch, else their mean), but the
    vocabulary projection and softmax skip prompt tokens, which are most of a chat example's tokens. Works on
    padding-free batches (one flattened row); `logits_to_keep` takes the positions as an index tensor.
    """
    labels = inputs["labels"]
    targets = labels[0, 1:]
    keep = (targets != IGNORE_INDEX).nonzero().squeeze(-1)
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**forward, logits_to_keep=keep, use_cache=False).logits[0]
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    if num_items_in_batch is None:
        return loss / max(1, keep.numel())
    return loss / num_items_in_batch


def _evaluated_at_end(trainer) -> bool:
    evals = [row["step"] for row in trainer.state.log_history if "eval_loss" in row]
    return bool(evals) and evals[-1] == trainer.state.global_step


def _result(ctx: RunContext, trainer, seconds: float) -> TrainResult:
    best = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, BestCallback)), None)
    losses = [row["loss"] for row in ctx.run.read_metrics() if "loss" in row]
    stopped = any(row.get("early_stopping") for row in trainer.state.log_history)
    return TrainResult(
        run_dir=ctx.run.root, final_dir=ctx.run.final, steps=trainer.state.global_step,
        train_loss=losses[-1] if losses else None, best_val_loss=best.best if best else None,
        tokens=int(trainer.state.num_input_tokens_seen), seconds=seconds,
        best_dir=ctx.run.best if ctx.run.best.exists() else None, stopped_early=stopped, model=trainer.model,
    )

