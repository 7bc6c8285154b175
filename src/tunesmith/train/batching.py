"""Tokenized datasets and batch collation: padding-free (default) or padded, loss on assistant tokens only.

Padding-free batches concatenate the examples of a batch into one row with position ids restarting at 0 for
each example (transformers' DataCollatorWithFlattening). transformers builds a block-diagonal causal mask
from those position ids, so no example attends to another, but only when no KV cache is built: training
must run with `use_cache=False` (see `prepare_for_training`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.config.schema import DataConfig
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_example
from tunesmith.errors import DataError

BATCHINGS = ("padding_free", "padded")


@dataclass
class TokenizedSplit:
    dataset: object  # datasets.Dataset with input_ids, labels, length
    skipped: int  # examples without any loss token (e.g. truncated before the answer)
    truncated: int


def tokenize_split(tokenizer, rows: list[dict], data: DataConfig, name: str = "train") -> TokenizedSplit:
    """Tokenize examples with the data stage's loss mask; drop those with no loss tokens."""
    from datasets import Dataset

    records, skipped, truncated = [], 0, 0
    for row in rows:
        tok = tokenize_example(tokenizer, row, data.loss_on, data.max_length)
        truncated += tok.truncated
        if tok.num_loss_tokens == 0:
            skipped += 1
            continue
        records.append({"input_ids": tok.input_ids, "labels": tok.labels, "length": len(tok.input_ids)})
    if rows and not records:
        raise DataError(
            f"no {name} example has a token to learn from after tokenizing ({len(rows)} examples)",
            hint="raise data.max_length (answers were cut off) or check data.loss_on",
        )
    return TokenizedSplit(Dataset.from_list(records) if records else None, skipped, truncated)


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
            self.inner = DataCollatorWithFlattening(return_position_ids=True, return_flash_attn_kwargs=True, separator_id=IGNORE_INDEX)
        else:
            self.inner = DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX)

    def __call__(self, features: list[dict]) -> dict:
        return self.inner([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])


def real_tokens(batch: dict) -> int:
    """Non-pad tokens in a collated batch."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())
