"""`data stats`: token lengths with the real tokenizer and chat template, cut shares, a recommended max_length.

Lengths come from rendering each conversation with the chat template and tokenizing all rendered texts in
batches with the fast tokenizer (the loss mask is not needed to count), so 10,000 rows take a few seconds.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, field

from tunesmith.config.load import load_config
from tunesmith.data.clean import texts_of
from tunesmith.data.example import is_conversation
from tunesmith.data.sources import looks_like_config
from tunesmith.data.splits import load_sources, split_each
from tunesmith.errors import DataError
from tunesmith.model.load import tokenizer_for

CUTS = (128, 256, 512, 1024, 2048, 4096)
MULTIPLE = 64
BATCH = 1000


@dataclass
class LengthStats:
    """Token length statistics of a set of examples."""

    examples: int
    total_tokens: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: int
    cut: list[dict]  # {max_length, examples_cut, tokens_cut} shares
    keep: float
    recommended_max_length: int
    histogram: list[dict]  # {low, high, count}
    packing: dict  # {max_length, sequences, fill}


@dataclass
class DataStats:
    """What `data stats` reports: where rows come from, and their token lengths."""

    sources: list[dict] = field(default_factory=list)  # {label, format, reason, rows, train, val, test, dropped}
    lengths: LengthStats | None = None
    tokenizer: str = ""
    truncation: dict | None = None  # {max_length, side, truncated, lose_part, lose_all}: trained tokens lost to the cut

    def to_dict(self) -> dict:
        return asdict(self)


def render_texts(tokenizer, examples: list[dict]) -> list[str]:
    """The exact training text of each example (chat template for conversations, the text itself otherwise)."""
    texts = []
    for example in examples:
        if is_conversation(example):
            extra = {"tools": example["tools"]} if example.get("tools") else {}
            texts.append(tokenizer.apply_chat_template(example["messages"], tokenize=False, **extra))
        else:
            texts.append(example.get("text") or "")
    return texts


def count_tokens(tokenizer, examples: list[dict]) -> list[int]:
    """Tokens per example as training would see them (text examples get BOS/EOS as tokenize_text adds them)."""
    texts = render_texts(tokenizer, examples)
    counts: list[int] = []
    for start in range(0, len(texts), BATCH):
        chunk = texts[start : start + BATCH]
        is_text = [not is_conversation(ex) for ex in examples[start : start + BATCH]]
        plain = _encode_batch(tokenizer, chunk)
        counts += [
            len(ids) + (_text_extra(tokenizer, ids) if text else _bos_extra(tokenizer, ids))
            for ids, text in zip(plain, is_text)
        ]
    return counts


def _encode_batch(tokenizer, texts: list[str]) -> list[list[int]]:
    """Ids of many texts at once; the Rust backend's encode_batch_fast skips offsets (we only count)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _bos_extra(tokenizer, ids: list[int]) -> int:
    """1 when training puts a BOS in front that the rendered text lacks (SentencePiece families)."""
    from tunesmith.data.tokenize import expects_bos

    return 1 if expects_bos(tokenizer) and (not ids or ids[0] != tokenizer.bos_token_id) else 0


def _text_extra(tokenizer, ids: list[int]) -> int:
    return _bos_extra(tokenizer, ids) + (1 if tokenizer.eos_token_id is not None else 0)


def recommend_max_length(lengths: list[int], keep: float = 0.99, multiple: int = MULTIPLE) -> int:
    """Smallest multiple of `multiple` that keeps at least `keep` of the examples whole."""
    if not lengths:
        return multiple
    ordered = sorted(lengths)
    needed = ordered[max(0, math.ceil(keep * len(ordered)) - 1)]
    return max(multiple, math.ceil(needed / multiple) * multiple)


def cut_shares(lengths: list[int], max_length: int) -> dict:
    """Share of examples longer than max_length, and share of all tokens that truncation would drop."""
    total = sum(lengths) or 1
    over = [n for n in lengths if n > max_length]
    return {
        "max_length": max_length,
        "examples_cut": len(over) / max(1, len(lengths)),
        "tokens_cut": sum(n - max_length for n in over) / total,
    }


def packing_fill(lengths: list[int], max_length: int) -> dict:
    """Best-fit-decreasing packing of (truncated) examples into sequences of max_length: how full they are."""
    free: list[int] = []  # sorted free space of open sequences
    for n in sorted((min(n, max_length) for n in lengths), reverse=True):
        at = bisect.bisect_left(free, n)
        if at < len(free):
            left = free.pop(at) - n
        else:
            left = max_length - n
        bisect.insort(free, left)
    used = sum(min(n, max_length) for n in lengths)
    sequences = len(free)
    return {
        "max_length": max_length,
        "sequences": sequences,
        "fill": used / (sequences * max_length) if sequences else 0.0,
    }


def histogram(lengths: list[int], bins: int = 16) -> list[dict]:
    """Equal-width bins from 0 to the longest example."""
    if not lengths:
        return []
    width = max(1, math.ceil((max(lengths) + 1) / bins))
    counts = [0] * bins
    for n in lengths:
        counts[min(bins - 1, n // width)] += 1
    return [{"low": i * width, "high": (i + 1) * width - 1, "count": c} for i, c in enumerate(counts)]


def length_stats(lengths: list[int], keep: float = 0.99) -> LengthStats:
    """Summary statistics, cut shares at 128..4096, the recommended max_length and packing fill."""
    import numpy as np

    arr = np.asarray(lengths or [0])
    p50, p90, p95, p99 = (float(np.percentile(arr, q)) for q in (50, 90, 95, 99))
    recommended = recommend_max_length(lengths, keep)
    return LengthStats(
        examples=len(lengths),
        total_tokens=int(arr.sum()),
        mean=float(arr.mean()),
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        max=int(arr.max()),
        cut=[cut_shares(lengths, c) for c in CUTS],
        keep=keep,
        recommended_max_length=recommended,
        histogram=histogram(lengths),
        packing=packing_fill(lengths, recommended),
    )


def file_stats(path: str, model: str, chat_template: str = "auto", keep: float = 0.99, fmt: str = "auto") -> DataStats:
    """Stats of one file (or folder) read with the given model's tokenizer."""
    from pathlib import Path

    config = load_config(
        data={
            "model": {"name_or_path": model, "chat_template": chat_template},
            "data": {
                "sources": [{"path": str(Path(path)), "format": fmt}],
                "split": {"val": 0, "test": 0},
                "clean": {"dedup": False},
            },
        }
    )  # a bare file is measured as it is
    return config_stats(config, keep)


def config_stats(config, keep: float = 0.99) -> DataStats:
    """Stats of a config's sources (after cleaning) with its model's tokenizer and chat template."""
    loaded = load_sources(config)
    per_source = split_each(loaded, config)
    examples = [ex for item in loaded for ex in item.examples]
    sample_texts = ["\n".join(texts_of(ex)) for ex in examples[:2000]]
    model = config.model
    tokenizer = tokenizer_for(model, texts=sample_texts)
    stats = DataStats(tokenizer=model.tokenizer or model.name_or_path)
    for item, parts in zip(loaded, per_source):
        stats.sources.append(
            {
                "label": item.label,
                "format": item.format,
                "reason": item.reason,
                "rows": len(item.examples),
                **{name: len(rows) for name, rows in parts.items()},
                "dropped": item.dropped,
            }
        )
    lengths = count_tokens(tokenizer, examples)
    stats.lengths = length_stats(lengths, keep)
    data = config.data
    long = [ex for ex, n in zip(examples, lengths) if n > data.max_length]  # only these can lose trained tokens
    stats.truncation = trained_tokens_cut(tokenizer, long, data.loss_on, data.max_length, data.truncation)
    return stats


def trained_tokens_cut(tokenizer, examples: list[dict], loss_on: str, max_length: int, side: str) -> dict:
    """How many examples lose part or all of their trained (loss) tokens at max_length with this truncation side."""
    from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_example

    truncated = part = whole = 0
    for example in examples:
        labels = tokenize_example(tokenizer, example, loss_on).labels
        if len(labels) <= max_length:
            continue
        truncated += 1
        kept = [] if side == "drop" else labels[-max_length:] if side == "left" else labels[:max_length]
        trained, kept_trained = (sum(1 for t in x if t != IGNORE_INDEX) for x in (labels, kept))
        whole += trained > 0 and kept_trained == 0
        part += 0 < kept_trained < trained
    return {"max_length": max_length, "side": side, "truncated": truncated, "lose_part": part, "lose_all": whole}


def format_stats(stats: DataStats, bar_width: int = 40) -> str:
    """A human-readable report with a terminal histogram."""
    lines = [f"tokenizer: {stats.tokenizer}"]
    for s in stats.sources:
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items() if v)
        lines.append(
            f"source {s['label']}: {s['reason']}; {s['rows']} rows (train {s['train']}, val {s['val']}, test {s['test']})"
            + (f"; dropped {dropped}" if dropped else "")
        )
    st = stats.lengths
    if st is None:
        return "\n".join(lines)
    lines.append(
        f"tokens/example: mean {st.mean:.1f}  p50 {st.p50:.0f}  p90 {st.p90:.0f}  p95 {st.p95:.0f}  p99 {st.p99:.0f}  max {st.max}"
        f"  ({st.examples} examples, {st.total_tokens} tokens)"
    )
    lines.append(
        "cut at max_length:  "
        + "  ".join(f"{c['max_length']}: {c['examples_cut']:.1%} ex / {c['tokens_cut']:.1%} tok" for c in st.cut)
    )
    if stats.truncation:
        t = stats.truncation
        lines.append(
            f"at max_length {t['max_length']} (data.truncation: {t['side']}): {t['truncated']} examples cut; "
            f"{t['lose_part']} lose part of their trained tokens, {t['lose_all']} lose all (dropped from training)"
        )
    lines.append(
        f"recommended max_length: {st.recommended_max_length} (smallest multiple of {MULTIPLE} keeping >= {st.keep:.1%} of examples whole)"
    )
    lines.append(
        f"packing at {st.packing['max_length']}: {st.packing['sequences']} sequences, {st.packing['fill']:.1%} full"
    )
    peak = max((b["count"] for b in st.histogram), default=1) or 1
    for b in st.histogram:
        lines.append(
            f"{b['low']:>7}-{b['high']:<7} {'█' * round(b['count'] / peak * bar_width):<{bar_width}} {b['count']}"
        )
    return "\n".join(lines)


def stats_target(
    target: str,
    model: str | None = None,
    chat_template: str | None = None,
    keep: float = 0.99,
    fmt: str = "auto",
    overrides: list[str] | None = None,
) -> DataStats:
    """`data stats` on a config file (its model, unless --model overrides) or a data file (needs --model)."""
    from pathlib import Path

    if not 0 < keep <= 1:
        raise DataError(f"--keep {keep}: must be a share in (0, 1], e.g. 0.99")
    path = Path(target)
    if not path.exists():
        raise DataError(f"{target}: no such file or folder")
    if looks_like_config(path):
        overrides = [*(overrides or []), *([f"model.name_or_path={model}"] if model else [])]
        overrides += [f"model.chat_template={chat_template}"] if chat_template else []
        return config_stats(load_config(path, overrides), keep)
    if not model:
        raise DataError(
            f"{target}: token counts need a tokenizer: pass --model (hub id, folder, .gguf or tiny:qwen2)",
            hint=f"e.g. tunesmith data stats {target} --model Qwen/Qwen2.5-0.5B-Instruct, or give a config file",
        )
    return file_stats(target, model, chat_template or "auto", keep, fmt)
