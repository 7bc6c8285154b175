"""Load what a run produced: the base model, the tuned model (base + adapter, or full weights), the tokenizer.

Layout contract (written by training, see tunesmith/run_dir.py):
  final/   either a peft adapter (adapter_config.json + adapter_model.safetensors) or a full model folder,
           plus the tokenizer with the chat template the run trained with.
  base_model/   the built base when model.name_or_path is `tiny:...`.
  manifest.json "base_model": the loadable base path or hub id.
Any argument that is not a run directory is treated as a model (hub id, folder, .gguf).
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.model.load import is_tiny, load_model, load_tokenizer, tokenizer_for
from tunesmith.run_dir import RunDir, is_run_dir


def run_base_model_path(run: RunDir) -> str:
    """The loadable base model of a run (hub id, folder or .gguf)."""
    manifest = run.read_manifest()
    if manifest.base_model:
        return manifest.base_model
    name = run.config().model.name_or_path
    return str(run.base_model) if is_tiny(name) else name


def run_system_prompt(target: str | Path) -> str | None:
    """The system prompt a run trained with (manifest.json `system_prompt`); None for a plain model."""
    if not is_run_dir(target):
        return None
    return RunDir.of(target).read_manifest().system_prompt


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def load_run_tokenizer(run: RunDir):
    """The tokenizer saved with the run's final model (its chat template is the one trained with)."""
    if (run.final / "tokenizer_config.json").exists():
        return load_tokenizer(str(run.final))
    return tokenizer_for(run.config().model, run_base_model_path(run))


CHECKPOINT_HELP = "best, final or step-N (default: best/ when the run kept one, else final/)"


def has_weights(folder: Path) -> bool:
    return is_adapter(folder) or (folder / "config.json").is_file()


def checkpoint_folder(run: RunDir, choice: str | None = None) -> tuple[Path, str]:
    """(folder, label) of the weights to use: best/ by default when the run kept one, else final/."""
    choice = (choice or "").strip().rstrip("/")
    if not choice:
        return (run.best, "best") if has_weights(run.best) else (run.final, "final")
    if choice in ("best", "final"):
        folder = run.best if choice == "best" else run.final
        if not has_weights(folder):
            why = " (it had no validation split, or never evaluated)" if choice == "best" else ""
            raise TunesmithError(f"{run.root}: the run kept no {choice}/ weights{why}", hint="use --checkpoint final")
        return folder, choice
    steps = sorted((p.name for p in run.checkpoints.glob("step-*") if p.name[5:].isdigit()), key=lambda n: int(n[5:]))
    if choice.startswith("step-") and choice in steps and has_weights(run.checkpoints / choice):
        return run.checkpoints / choice, choice
    kept = ", ".join(["best"] * has_weights(run.best) + ["final"] + steps)
    raise TunesmithError(f"--checkpoint {choice}: not a checkpoint of {run.root}", hint=f"this run kept: {kept}")


def checkpoint_label(target: str | Path, choice: str | None = None) -> str | None:
    """Which weights of a run `choice` means ('best', 'final', 'step-40'); None for a plain model."""
    if not is_run_dir(target):
        return None
    return checkpoint_folder(RunDir.of(target), choice)[1]


def load_tuned(target: str | Path, dtype=None, merged: bool = False, checkpoint: str | None = None):
    """(model, tokenizer) for a run directory (base + adapter) or a plain model path.

    `checkpoint` picks best, final or step-N of a run (default: best/ when kept, else final/); `merged=True`
    merges an adapter into the base weights.
    """
    target = str(target)
    if not is_run_dir(target):
        return load_model(target, dtype=dtype), load_tokenizer(target)
    run = RunDir.of(target)
    run.require_finished()
    folder, _ = checkpoint_folder(run, checkpoint)
    tokenizer = load_run_tokenizer(run)
    if not is_adapter(folder):
        return load_model(str(folder), dtype=dtype), tokenizer
    from peft import PeftModel

    base = load_model(run_base_model_path(run), dtype=dtype)
    model = PeftModel.from_pretrained(base, str(folder))
    if merged:
        model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def load_base(target: str | Path, dtype=None):
    """(model, tokenizer) of the base model a run started from, with the run's chat template."""
    target = str(target)
    if not is_run_dir(target):
        return load_model(target, dtype=dtype), load_tokenizer(target)
    run = RunDir.of(target)
    return load_model(run_base_model_path(run), dtype=dtype), load_run_tokenizer(run)
