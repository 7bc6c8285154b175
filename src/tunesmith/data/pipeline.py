"""Config -> train/val/test lists of examples in the internal shape.

Internal shape of one example: {"messages": [{"role": ..., "content": ...}, ...], "meta": {...}} for
conversations, or {"text": ..., "meta": {...}} for plain text. `meta` keeps the row's original columns
(e.g. GSM8K's `answer`) for rewards and evaluation.

NOTE: minimal first version (local JSONL, messages/text only); the data stage replaces the internals and
keeps these signatures.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tunesmith.config.schema import Config, SplitConfig
from tunesmith.errors import DataError

SPLITS = ("train", "val", "test")


def load_examples(config: Config) -> list[dict]:
    """Every source read, converted to the internal shape, cleaned and mixed (not split)."""
    rows: list[dict] = []
    for source in config.data.sources:
        path = Path(source.path or "")
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append({"messages": row["messages"]} if "messages" in row else {"text": row["text"]})
    return rows


def split_examples(rows: list[dict], split: SplitConfig, seed: int) -> dict[str, list[dict]]:
    """Seeded shuffle, then cut off the val and test shares (at least one row each when asked for)."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n = len(rows)
    n_test = max(1, round(n * split.test)) if split.test > 0 and n > 2 else 0
    n_val = max(1, round(n * split.val)) if split.val > 0 and n > 2 else 0
    test = [rows[i] for i in order[:n_test]]
    val = [rows[i] for i in order[n_test : n_test + n_val]]
    train = [rows[i] for i in order[n_test + n_val :]]
    return {"train": train, "val": val, "test": test}


def prepare_splits(config: Config) -> dict[str, list[dict]]:
    """The train/val/test examples a run trains and evaluates on."""
    return split_examples(load_examples(config), config.data.split, config.run.seed)
