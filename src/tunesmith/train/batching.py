"""Tokenized datasets and batch collation: padding-free (default) or padded, loss on assistant tokens only.

Padding-free batches concatenate the examples of a batch into one row with position ids restarting at 0 for
each example (transformers' DataCollatorWithFlattening), plus the example boundaries. The attention then runs
per example (train/varlen_attention.py) or, with other kernels, under a block-diagonal mask that transformers
derives from the position ids only when no KV cache is built: training runs with `use_cache=False`
(model/adapters.py trainable_model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config.schema import DataConfig
from tunesmith.data.example import Example
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_dataset
from tunesmith.errors import DataError

BATCHINGS = ("padding_free", "padded")


@dataclass
class TokenizedSplit:
    dataset: object  # datasets.Dataset with input_ids, labels, length
    skipped: int  # examples without any loss token before any cut (e.g. no assistant turn under loss_on)
    truncated: int
    cut_away: int = 0  # examples dropped because max_length cut all their trained tokens (or truncation: drop)


def tokenize_split(tokenizer, rows: list[Example], data: DataConfig, name: str = "train") -> TokenizedSplit:
    """Tokenize examples with the data stage's loss mask (cached by content, multi-process when large);
    drop those with no loss tokens."""
    if not rows:
        return TokenizedSplit(None, 0, 0, 0)
    tokenized = tokenize_dataset(
        tokenizer,
        rows,
        data.loss_on,
        data.max_length,
        cache_dir=token_cache_dir(),
        num_proc=data.num_proc,
        truncation=data.truncation,
    )
    keep = [i for i, labels in enumerate(tokenized["labels"]) if any(t != IGNORE_INDEX for t in labels)]
    if not keep:
        raise DataError(
            f"no {name} example has a token to learn from after tokenizing ({len(rows)} examples)",
            hint="raise data.max_length (answers were cut off), set data.truncation: left, or check data.loss_on",
        )
    truncated = sum(tokenized["truncated"])
    kept = set(keep)
    # Examples whose every trained token fell past max_length: dropped and counted, never trained on as prompt-only.
    cut_away = sum(1 for i, cut in enumerate(tokenized["truncated"]) if cut and i not in kept)
    if cut_away:
        print(
            f"{name}: dropped {cut_away} of {len(rows)} examples whose trained tokens all lie beyond max_length "
            f"{data.max_length} (data.truncation: {data.truncation}); see `tunesmith data stats`"
        )
    dataset = tokenized.select(keep).remove_columns(["truncated"])
    dataset = dataset.add_column("length", [len(ids) for ids in dataset["input_ids"]])
    return TokenizedSplit(dataset, len(rows) - len(keep) - cut_away, truncated, cut_away)


def token_cache_dir() -> Path:
    """Where tokenized splits are cached by content fingerprint ($TUNESMITH_CACHE, else ~/.cache/tunesmith)."""
    root = os.environ.get("TUNESMITH_CACHE") or Path.home() / ".cache" / "tunesmith"
    return Path(root) / "tokenized"


def resolve_batching(choice: str, device: str) -> str:
    """auto -> padding_free on every device: measured fastest on CPU (bench/sft_throughput.py), no pad compute on GPU."""
    return "padding_free" if choice == "auto" else choice


class Collator:
    """Batch token lists into tensors: flattened (padding-free) or padded to the longest example."""

    def __init__(self, batching: str, tokenizer):
        from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

        self.batching = batching
        if batching == "padding_free":
            # the example boundaries let the attention run per example (train/varlen_attention.py)
            self.inner = DataCollatorWithFlattening(
                return_position_ids=True, return_flash_attn_kwargs=True, separator_id=IGNORE_INDEX
            )
        else:
            self.inner = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)

    def __call__(self, features: list[dict]) -> dict:
        return self.inner([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])


def real_tokens(batch: dict) -> int:
    """Non-pad tokens in a collated batch."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())
