"""Merge a run's adapter into its base and save a plain HF folder (safetensors + tokenizer + chat template)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tunesmith.model.from_run import load_tuned, run_base_model_path
from tunesmith.run_dir import RunDir

# What a merged folder holds; anything else from an earlier export is removed so reruns give the same folder.
MERGED_SUFFIXES = (".safetensors", ".json", ".jinja", ".model", ".txt")


def merge_run(run_dir: Path, out_dir: Path, checkpoint: str | None = None):
    """Write base + adapter merged (full precision, never into 4-bit weights) to `out_dir`; (model, tokenizer).

    A QLoRA run's base is reloaded in 16/32-bit here: `load_tuned` does not pass a quantization config.
    """
    model, tokenizer = load_tuned(run_dir, dtype=merge_dtype(run_dir), merged=True, checkpoint=checkpoint)
    if hasattr(model, "merge_and_unload"):  # a full fine-tune saved as peft? defensive: merge anyway
        model = model.merge_and_unload()
    save_model_folder(model, tokenizer, out_dir, sentencepiece_file(run_dir))
    return model, tokenizer


def save_model_folder(model, tokenizer, out_dir: Path, sentencepiece: Path | None = None) -> Path:
    """A plain HF folder (safetensors, config, tokenizer, chat template); a model read from a GGUF can be saved
    because load_model drops transformers' GGUF marker from its dequantized weights.

    transformers 5 saves tokenizer.json only; llama.cpp's converter reads a SentencePiece vocabulary (Llama-2,
    Gemma, Phi-3 style) from tokenizer.model, so the run's own file is copied beside it.
    """
    _clear(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if sentencepiece is not None and not (out_dir / "tokenizer.model").exists():
        shutil.copy(sentencepiece, out_dir / "tokenizer.model")
    return out_dir


def sentencepiece_file(run_dir: Path) -> Path | None:
    """The SentencePiece model behind a run's tokenizer: final/, model.tokenizer, or the base's folder/cache."""
    run = RunDir.of(run_dir)
    candidates = [run.final / "tokenizer.model"]
    tokenizer = run.config().model.tokenizer
    for source in [tokenizer, run_base_model_path(run)]:
        if source:
            candidates += _sentencepiece_candidates(source)
    return next((path for path in candidates if path.is_file()), None)


def _sentencepiece_candidates(source: str) -> list[Path]:
    path = Path(source)
    if source.endswith(".model"):
        return [path]
    if source.endswith(".gguf"):  # a GGUF whose tokenizer transformers cannot read comes with its .model beside it
        return sorted(path.parent.glob("*.model"))
    if path.is_dir():
        return [path / "tokenizer.model"]
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "tokenizer.model")
    return [Path(cached)] if isinstance(cached, str) else []


def merge_dtype(run_dir: Path):
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
