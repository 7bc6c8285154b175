"""Supervised fine-tuning (full, LoRA, QLoRA) on the HF Trainer with our tokenized, loss-masked data.

Imports torch: import this module lazily (train/api.py's METHODS table does).

Why the HF Trainer and not TRL's SFTTrainer: the data stage already produces token ids and an
assistant-only loss mask for any chat template (no `{% generation %}` markers needed), so SFTTrainer's
chat formatting, masking and packing would be bypassed anyway; the Trainer gives us checkpoints, exact
resume (optimizer, scheduler, RNG, data position), grad accumulation with token-weighted loss, DDP and
trackers, and a padding-free collator from transformers itself.
"""

from __future__ import annotations

import torch
from transformers import PrinterCallback, Trainer, TrainingArguments

from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.model.fused_norm_rope import fused_norm_and_rope
from tunesmith.train.batching import Collator, real_tokens, resolve_batching, tokenize_split
from tunesmith.train.callbacks import BestCallback
from tunesmith.train.distributed import strategy, use_fsdp_on_cpu
from tunesmith.train.lean_steps import LeanSteps
from tunesmith.train.method import TrainingMethod, base_result
from tunesmith.train.prepare import RunContext, write_manifest
from tunesmith.train.result import TrainResult
from tunesmith.train.sampling import SeededLengthGroupedSampler
from tunesmith.train.trainer_setup import (
    NonFiniteLoss,
    check_launch,
    common_training_kwargs,
    run_trainer,
    standard_callbacks,
)
from tunesmith.train.varlen_attention import restore_sdpa, use_varlen_attention


class SFTMethod(TrainingMethod):
    """method: sft. Tokenized, loss-masked examples on the HF Trainer; a last evaluation and best/ when there is a
    validation split."""

    name = "sft"
    val_set = None

    def build_trainer(self, ctx: RunContext) -> Trainer:
        config = ctx.config
        batching = resolve_batching(config.train.batching, ctx.plan.device)
        train = tokenize_split(ctx.tokenizer, ctx.splits["train"], config.data, "train")
        val = tokenize_split(ctx.tokenizer, ctx.splits["val"], config.data, "val") if ctx.splits["val"] else None
        self.val_set = val.dataset if val else None
        sampling = "group_by_length" if batching == "padded" else "random"
        args = TrainingArguments(
            **common_training_kwargs(ctx, has_val=self.val_set is not None), train_sampling_strategy=sampling
        )
        check_launch(args)
        varlen = batching == "padding_free" and use_varlen_attention(ctx.model)
        attention = "per-example sdpa" if varlen else ctx.model.config._attn_implementation
        examples = {
            "train": len(train.dataset),
            "skipped_no_loss": train.skipped,
            "truncated": train.truncated,
            "dropped_cut": train.cut_away,
            "truncation": config.data.truncation,
        }
        write_manifest(
            ctx,
            batching=batching,
            attention=attention,
            distributed=strategy(config, args.world_size),
            processes=args.world_size,
            examples=examples,
        )
        trainer = TokenCountingTrainer(
            model=ctx.model,
            args=args,
            train_dataset=train.dataset,
            eval_dataset=self.val_set,
            data_collator=Collator(batching, ctx.tokenizer),
            processing_class=ctx.tokenizer,
            callbacks=standard_callbacks(ctx),
        )
        trainer.remove_callback(PrinterCallback)  # the rich bar and metrics.jsonl replace printed dicts
        use_fsdp_on_cpu(trainer)
        return trainer

    def train(self, trainer, ctx: RunContext):
        with fused_norm_and_rope(trainer.model):  # CPU fp32 only, checked against the originals first
            output = run_trainer(trainer, ctx)
            if self.val_set is not None and not _evaluated_at_end(trainer):
                trainer.evaluate()
        restore_sdpa(trainer.model)
        return output

    def result(self, ctx: RunContext, trainer, output, seconds: float) -> TrainResult:
        best = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, BestCallback)), None)
        result = base_result(ctx, trainer, seconds)
        result.best_val_loss = best.best if best else None
        result.best_dir = ctx.run_dir.best if ctx.run_dir.best.exists() else None
        result.stopped_early = any(row.get("early_stopping") for row in trainer.state.log_history)
        result.train_seconds = output.metrics.get("train_runtime")
        return result

    def summary(self, result: TrainResult) -> dict:
        return {**super().summary(result), "best_val_loss": result.best_val_loss}


class TokenCountingTrainer(LeanSteps, Trainer):
    """Counts real (non-pad) tokens, computes logits only where there is loss, stops on a NaN/inf loss; padded
    batches are grouped by length in an order seeded by data_seed + epoch (train/sampling.py)."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or dataset is None:
            return super()._get_train_sampler(train_dataset)
        group = self.args.train_batch_size * self.args.gradient_accumulation_steps
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return SeededLengthGroupedSampler(group, dataset, seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.state.num_input_tokens_seen += real_tokens(inputs)
        if return_outputs or not _flat_batch_with_labels(inputs):
            out = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
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


METHOD = SFTMethod
