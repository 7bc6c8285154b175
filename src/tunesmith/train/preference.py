"""Preference training on TRL's trainers: DPO (DPOTrainer), KTO (KTOTrainer), ORPO (ORPOTrainer) and SimPO
(CPOTrainer with loss_type "simpo").

One method module for the four (train/method.py): the default `prepare` (run directory, splits, the policy:
the base with new adapters, or train.init_from's run continued), `build_trainer` here, the default `train`,
and `finish` saving only the trained adapter.
The reference model, for DPO and KTO only:
- LoRA / QLoRA: no second model. TRL computes reference log-probs through the same model, with the adapter
  disabled (new adapter: the base) or with a frozen copy of the starting adapter (init_from: the SFT run);
- full fine-tune: a second copy of the base, unless preference.precompute_reference runs one reference pass
  over the data before training and keeps only the log-probs.
ORPO and SimPO need no reference model at all.
TRL logs rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies (and kl for KTO); they go to
metrics.jsonl next to the loss. DPO batches are padding-free (train/preference_batching.py).
"""

from __future__ import annotations

from importlib import import_module

from datasets import Dataset
from transformers import PrinterCallback

from tunesmith.config.schema import Config
from tunesmith.model.base import load_base_model
from tunesmith.peak_memory import peak_rss_mib
from tunesmith.run_dir import RunDir
from tunesmith.train.callbacks import BestCallback, MetricsCallback, RichProgressCallback
from tunesmith.train.lean_steps import LeanSteps
from tunesmith.train.method import TrainingMethod, base_result
from tunesmith.train.preference_batching import use_flat_batches
from tunesmith.train.prepare import RunContext, write_manifest
from tunesmith.train.result import TrainResult
from tunesmith.train.trainer_setup import check_launch, common_training_kwargs, standard_callbacks

# method -> (module, trainer class, config class)
TRAINERS = {
    "dpo": ("trl", "DPOTrainer", "DPOConfig"),
    "kto": ("trl", "KTOTrainer", "KTOConfig"),
    "orpo": ("trl.experimental.orpo", "ORPOTrainer", "ORPOConfig"),
    "simpo": ("trl.experimental.cpo", "CPOTrainer", "CPOConfig"),
}
NEEDS_REFERENCE = ("dpo", "kto")
# TRL log keys kept in metrics.jsonl besides the shared ones (eval_ versions are kept too).
PREFERENCE_LOG_PREFIXES = ("rewards/", "logps/", "kl", "nll_loss", "log_odds")


class PreferenceMethod(TrainingMethod):
    """method: dpo | orpo | kto | simpo, each on its TRL trainer (the subclasses at the end name them)."""

    def build_trainer(self, ctx: RunContext):
        """The method's TRL trainer over our rows, with the shared run-directory callbacks."""
        method = ctx.config.method
        train_rows, val_rows = (trl_rows(ctx.splits[s], method) for s in ("train", "val"))
        trainer_class, config_class = trainer_classes(method)
        args = config_class(**common_training_kwargs(ctx, has_val=bool(val_rows)), **method_args(ctx.config))
        check_launch(args)
        extra = {"ref_model": reference_model(ctx)} if method in NEEDS_REFERENCE else {}
        trainer = trainer_class(
            model=ctx.model,
            args=args,
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
            processing_class=ctx.tokenizer,
            callbacks=preference_callbacks(ctx),
            **extra,
        )
        trainer.remove_callback(PrinterCallback)  # the progress bar and metrics.jsonl replace printed dicts
        write_manifest(ctx, batching=use_batching(ctx, trainer), reference=reference_kind(ctx.config))
        return trainer

    def finish(self, ctx: RunContext, trainer, output, seconds: float) -> TrainResult:
        drop_reference_adapter(trainer.model)
        return super().finish(ctx, trainer, output, seconds)

    def result(self, ctx: RunContext, trainer, output, seconds: float) -> TrainResult:
        result = base_result(ctx, trainer, seconds)
        best = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, BestCallback)), None)
        result.best_val_loss = best.best if best else None
        result.best_dir = ctx.run_dir.best if ctx.run_dir.best.exists() else None
        result.train_seconds = output.metrics.get("train_runtime")
        return result

    def summary(self, result: TrainResult) -> dict:
        return {
            **super().summary(result),
            "peak_rss_mib": peak_rss_mib(),
            "preference": last_preference_metrics(RunDir.of(result.run_dir)),
        }


def trl_rows(examples: list[dict], method: str) -> list[dict]:
    """Our preference examples -> TRL's conversational columns (prompt/chosen/rejected, or prompt/completion/label).

    KTO takes pairs too: each pair becomes a desirable (chosen) and an undesirable (rejected) row.
    """
    rows = []
    for ex in examples:
        if method == "kto" and "rejected" in ex:
            rows += [
                {"prompt": ex["prompt"], "completion": ex["chosen"], "label": True},
                {"prompt": ex["prompt"], "completion": ex["rejected"], "label": False},
            ]
        elif method == "kto":
            rows.append({"prompt": ex["prompt"], "completion": ex["completion"], "label": ex["label"]})
        else:
            rows.append({"prompt": ex["prompt"], "chosen": ex["chosen"], "rejected": ex["rejected"]})
    return rows


def method_args(config: Config) -> dict:
    """The TRL config fields of the method: beta, loss and lengths."""
    pref, method = config.preference, config.method
    args = {"beta": pref.beta_for(method), "max_length": config.data.max_length}
    if method == "dpo":
        args.update(
            loss_type=[pref.loss_type],
            label_smoothing=pref.label_smoothing,
            precompute_ref_log_probs=pref.precompute_reference,
        )
    elif method == "kto":
        args.update(
            desirable_weight=pref.desirable_weight,
            undesirable_weight=pref.undesirable_weight,
            precompute_ref_log_probs=pref.precompute_reference,
        )
    elif method == "simpo":
        args.update(loss_type="simpo", cpo_alpha=0.0, simpo_gamma=pref.simpo_gamma)
    return args


def trainer_classes(method: str):
    """(Trainer, Config) classes from TRL; the trainer counts real tokens for tokens/s like SFT's and keeps its
    per-step bookkeeping lean (train/lean_steps.py)."""
    module, trainer_name, config_name = TRAINERS[method]
    loaded = import_module(module)
    trainer = getattr(loaded, trainer_name)
    return type(f"Tunesmith{trainer_name}", (CountsRealTokens, LeanSteps, trainer), {}), getattr(loaded, config_name)


def use_batching(ctx, trainer) -> str:
    """DPO: padding-free preference batches (train/preference_batching.py) unless train.batching is padded.
    The other trainers keep TRL's padded batches."""
    if ctx.config.method != "dpo" or ctx.config.train.batching == "padded":
        return "padded"
    return "padding_free, per-sequence attention" if use_flat_batches(trainer) else "padding_free"


def reference_kind(config: Config) -> str:
    """How the run gets its reference log-probs (recorded in manifest.json)."""
    if config.method not in NEEDS_REFERENCE:
        return "none"
    if config.preference.precompute_reference:
        return "precomputed before training"
    if config.train.mode == "full":
        return "a second copy of the base"
    return "the starting adapter, frozen (init_from)" if config.train.init_from else "the base (adapter disabled)"


def reference_model(ctx):
    """A second base model for a full fine-tune's reference; None where TRL needs none (LoRA: the adapter is
    switched off or a frozen copy of it is used; precomputed log-probs)."""
    if ctx.config.train.mode != "full" or ctx.config.preference.precompute_reference:
        return None
    reference = load_base_model(ctx.config, ctx.base_model, ctx.plan)
    reference.requires_grad_(False)
    return reference.eval()


def preference_callbacks(ctx) -> list:
    """The shared callbacks with a metrics.jsonl writer that keeps the preference numbers."""

    metrics = MetricsCallback(ctx.run_dir, extra_prefixes=PREFERENCE_LOG_PREFIXES)
    swap = {MetricsCallback: metrics, RichProgressCallback: PreferenceProgressCallback(metrics)}
    return [next((new for kind, new in swap.items() if isinstance(cb, kind)), cb) for cb in standard_callbacks(ctx)]


class PreferenceProgressCallback(RichProgressCallback):
    """The shared progress bar, with the preference accuracy and margin next to the loss."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs, **kwargs)
        if self.progress is None or not logs or "rewards/accuracies" not in logs:
            return
        info = f"loss {logs.get('loss', float('nan')):.4f} | acc {logs['rewards/accuracies']:.2f}"
        if "rewards/margins" in logs:
            info += f" | margin {logs['rewards/margins']:.3f}"
        self.progress.update(self.task, info=info)


class CountsRealTokens:
    """Mixin for TRL's preference trainers: count non-pad tokens of every forward (chosen and rejected)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.state.num_input_tokens_seen += sum(
                int(v.sum()) for k, v in inputs.items() if k.endswith("attention_mask") and not k.startswith("KL_")
            )
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


def drop_reference_adapter(model) -> None:
    """Remove the frozen "ref" adapter TRL adds next to a continued adapter, so final/ holds only the trained one."""
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")


def last_preference_metrics(run) -> dict:
    """The last logged value of each preference metric (the manifest summary)."""
    out: dict = {}
    for row in run.read_metrics():
        out.update({k: v for k, v in row.items() if k.startswith(PREFERENCE_LOG_PREFIXES)})
    return out


class DPOMethod(PreferenceMethod):
    name = "dpo"


class ORPOMethod(PreferenceMethod):
    name = "orpo"


class KTOMethod(PreferenceMethod):
    name = "kto"


class SimPOMethod(PreferenceMethod):
    name = "simpo"
