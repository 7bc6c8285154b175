"""Merge a run's adapter into its base and save a plain HF folder (safetensors + tokenizer + chat template)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tunesmith.model.from_run import load_tuned
from tunesmith.run_dir import RunDir

# What a merged folder holds; anything else from an earlier export is removed so reruns give the same folder.
MERGED_SUFFIXES = (".safetensors", ".json", ".jinja", ".model", ".txt")


def merge_run(run_dir: Path, out_dir: Path):
    """Write base + adapter merged (full precision, never into 4-bit weights) to `out_dir`; (model, tokenizer).

    A QLoRA run's base is reloaded in 16/32-bit here: `load_tuned` does not pass a quantization config.
    """
    model, tokenizer = load_tuned(run_dir, dtype=_merge_dtype(run_dir), merged=True)
    if hasattr(model, "merge_and_unload"):  # a full fine-tune saved as peft? defensive: merge anyway
        model = model.merge_and_unload()
    _clear(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return model, tokenizer


def _merge_dtype(run_dir: Path):
    """The base's own dtype (bf16 models stay bf16); float32 when it is unknown."""
    import torch

    choice = RunDir.of(run_dir).config().model.dtype
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(choice, "auto")


def _clear(out_dir: Path) -> None:
    if out_dir.exists():
        for path in out_dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.suffix in MERGED_SUFFIXES or path.name == "README.md":
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
