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


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def load_run_tokenizer(run: RunDir):
    """The tokenizer saved with the run's final model (its chat template is the one trained with)."""
    if (run.final / "tokenizer_config.json").exists():
        return load_tokenizer(str(run.final))
    return tokenizer_for(run.config().model, run_base_model_path(run))


def load_tuned(target: str | Path, dtype=None, merged: bool = False, checkpoint: str = "final"):
    """(model, tokenizer) for a run directory (base + adapter) or a plain model path.

    `checkpoint` picks final/ or best/ of a run; `merged=True` merges an adapter into the base weights.
    """
    target = str(target)
    if not is_run_dir(target):
        return load_model(target, dtype=dtype), load_tokenizer(target)
    run = RunDir.of(target)
    run.require_finished()
    folder = run.final if checkpoint == "final" else run.root / checkpoint
    if not folder.exists():
        raise TunesmithError(f"{folder}: no such checkpoint in this run")
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
