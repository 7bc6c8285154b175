"""Config -> train/val/test lists of examples in the internal shape.

Internal shape of one example: {"messages": [{"role": ..., "content": ...}, ...], "meta": {...}} for
conversations, or {"text": ..., "meta": {...}} for plain text. `meta` keeps the row's original columns
(e.g. GSM8K's `answer`) for rewards and evaluation.

Order: per source read (limit/sample on raw rows) -> convert -> clean; exact duplicates are dropped across
all sources; each source is split by `data.split` fractions (or used whole as `use_as`); only the train
split is mixed by `weight` (so up-sampled copies never leak into val/test).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.schema import Config, SourceConfig, SplitConfig
from tunesmith.data.clean import clean_examples
from tunesmith.data.example import Example
from tunesmith.data.formats import DETECT_ROWS, detect_format, require_no_nulls, to_internal
from tunesmith.data.preference import method_problem
from tunesmith.data.sources import read_rows, resolve_source
from tunesmith.errors import DataError

SPLITS = ("train", "val", "test")
log = logging.getLogger(__name__)


@dataclass
class LoadedSource:
    """One source after reading, converting and cleaning."""

    label: str
    source: SourceConfig
    examples: list[Example]
    format: str
    reason: str
    dropped: dict[str, int] = field(default_factory=dict)


def load_source(source: SourceConfig, config: Config, base_dir: Path | None = None) -> tuple[list[Example], str, str]:
    """(examples in the internal shape, format, why that format) of one source, before cleaning."""
    resolved = resolve_source(source, base_dir)
    if resolved.spec.system_prompt is None:
        resolved.spec.system_prompt = config.data.system_prompt
    try:
        rows = read_rows(resolved, source.limit, source.sample, config.run.seed)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{resolved.label}: invalid UTF-8 ({exc.reason} at byte {exc.start})",
            hint=f"run `tunesmith data check {resolved.label}`",
        ) from None
    if not rows:
        raise DataError(f"{resolved.label}: no rows")
    fmt, reason = resolved.spec.format, f"{resolved.spec.format}: set in the config"
    if source.dataset_info and source.format == "auto":
        reason = f"{fmt}: from entry '{source.dataset}' of {source.dataset_info}"
    if fmt == "auto":
        fmt, reason = detect_format(rows[:DETECT_ROWS], where=resolved.label)
    examples = []
    for number, row in enumerate(rows, 1):
        try:
            example = to_internal(row, resolved.spec, fmt)
            require_no_nulls(example)
            examples.append(example)
        except DataError as exc:
            raise DataError(
                f"{resolved.label}: row {number}: {exc.message}", hint=f"run `tunesmith data check {resolved.label}`"
            ) from None
    return examples, fmt, reason


def load_sources(config: Config, base_dir: Path | None = None) -> list[LoadedSource]:
    """Every source read, converted and cleaned; duplicates are dropped across sources too."""
    if not config.data.sources:
        raise DataError("data.sources is empty", hint="add a source, e.g. data: {sources: [{path: train.jsonl}]}")
    seen: set[bytes] = set()
    loaded = []
    for source in config.data.sources:
        examples, fmt, reason = load_source(source, config, base_dir)
        label = source.dataset or source.path or "?"
        log.info("%s: %s", label, reason)
        kept, dropped = clean_examples(examples, config.data.clean, seen)
        loaded.append(LoadedSource(label, source, kept, fmt, reason, dropped))
    return loaded


def mix(groups: list[tuple[list[Example], float]], seed: int) -> list[Example]:
    """Mix groups of examples in proportion to their weights, keeping the total size; seeded shuffle.

    Equal weights simply concatenate. Otherwise group i gets round(w_i / sum(w) * total) examples: drawn
    without replacement when it has enough, else repeated whole plus a random remainder.
    """
    rng = random.Random(seed)
    total = sum(len(rows) for rows, _ in groups)
    weights = {w for rows, w in groups if rows}
    mixed: list[Example] = []
    if len(weights) <= 1:
        mixed = [row for rows, _ in groups for row in rows]
    else:
        weight_sum = sum(w for rows, w in groups if rows)
        for rows, weight in groups:
            if rows:
                mixed += _resample(rows, round(weight / weight_sum * total), rng)
    rng.shuffle(mixed)
    return mixed


def _resample(rows: list[dict], target: int, rng: random.Random) -> list[dict]:
    whole, rest = divmod(target, len(rows))
    return rows * whole + rng.sample(rows, rest)


def split_examples(rows: list[Example], split: SplitConfig, seed: int) -> dict[str, list[Example]]:
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


def split_each(loaded: list[LoadedSource], config: Config) -> list[dict[str, list[Example]]]:
    """Per source: its train/val/test rows (split by fractions, or whole as `use_as`).

    An explicit val/test source replaces that fraction for the sources that are split.
    """
    explicit = {s.source.use_as for s in loaded}
    fractions = SplitConfig(
        val=0.0 if "val" in explicit else config.data.split.val,
        test=0.0 if "test" in explicit else config.data.split.test,
    )
    out = []
    for i, item in enumerate(loaded):
        if item.source.use_as == "split":
            out.append(split_examples(item.examples, fractions, config.run.seed + i))
        else:
            out.append({name: item.examples if name == item.source.use_as else [] for name in SPLITS})
    return out


def split_sources(loaded: list[LoadedSource], config: Config) -> dict[str, list[Example]]:
    """The run's splits: per-source splits joined; only train is mixed by weight."""
    per_source = split_each(loaded, config)
    weights = [item.source.weight for item in loaded]
    splits = {"train": mix([(parts["train"], w) for parts, w in zip(per_source, weights)], config.run.seed)}
    for name in ("val", "test"):
        splits[name] = [row for parts in per_source for row in parts[name]]
    return splits


def system_prompt_of(config: Config, base_dir: Path | None = None) -> str | None:
    """The system prompt a run trains with: the first source's own (text or file), else data.system_prompt.

    This is what the run remembers (manifest.json) for generate, chat, eval prompts, parity and the Modelfile.
    """
    from tunesmith.data.sources import source_system_prompt

    for source in config.data.sources:
        own = source_system_prompt(source, base_dir)
        if own:
            return own
    return config.data.system_prompt


def check_method_fit(loaded: list[LoadedSource], method: str) -> None:
    """Refuse sources whose rows the method would not train on (e.g. preference pairs under method sft)."""
    for item in loaded:
        message = method_problem(method, item.format)
        if message:
            raise DataError(
                f"{item.label}: {message}",
                hint=f"the format was detected as {item.reason}; `tunesmith data check CONFIG` explains",
            )


def prepare_splits(config: Config) -> dict[str, list[Example]]:
    """The train/val/test examples a run trains and evaluates on."""
    loaded = load_sources(config)
    check_method_fit(loaded, config.method)
    splits = split_sources(loaded, config)
    if not splits["train"]:
        raise DataError("no training rows left after cleaning and splitting", hint="check data.clean and data.split")
    limits = config.data.split
    return {name: rows[: getattr(limits, f"{name}_limit")] for name, rows in splits.items()}
