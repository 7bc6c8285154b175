"""Valid inputs of every supported format, and hypothesis strategies that break them the ways users' files break.

Byte-level: truncation, byte flips, inserted NUL / invalid UTF-8, a BOM with CRLF line ends, UTF-16, duplicated
lines. Structure-level (JSON/YAML rows and configs): deleted, duplicated and renamed keys, wrong types, huge and
deeply nested values.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from hypothesis import strategies as st

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
MESSAGES = [
    {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"}, {"role": "assistant", "content": f"{a + b}"}]}
    for a, b in ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12))
]
ALPACA = [
    {"instruction": f"Add {a} and {b}.", "input": "", "output": f"{a + b}"} for a, b in ((1, 2), (3, 4), (5, 6), (7, 8))
]
QUESTIONS = [
    {"question": f"What is {a} times {b}?", "answer": f"#### {a * b}"} for a, b in ((2, 3), (4, 5), (6, 7), (8, 9))
]


def _csv(rows: list[dict], delimiter: str) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def valid_files() -> dict[str, bytes]:
    """One valid data file per supported suffix."""
    return {
        ".jsonl": "".join(json.dumps(r) + "\n" for r in MESSAGES).encode(),
        ".json": json.dumps(ALPACA, indent=1).encode(),
        ".csv": _csv(QUESTIONS, ","),
        ".tsv": _csv(ALPACA, "\t"),
        ".parquet": _parquet(MESSAGES),
        ".txt": "".join(f"Line {i} of a plain text corpus.\n" for i in range(8)).encode(),
    }


# ---- values that break schemas: wrong types, huge and deep
def deep(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.just("x" * 200_000),
    st.builds(deep, st.sampled_from([50, 2000])),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def mutate_value(data: object, draw) -> object:
    """Replace, delete or duplicate one key somewhere in a JSON-like value."""
    if isinstance(data, dict) and data:
        key = draw(st.sampled_from(sorted(data, key=str)))
        action = draw(st.sampled_from(["replace", "delete", "rename", "recurse", "recurse"]))
        out = dict(data)
        if action == "replace":
            out[key] = draw(ODD_VALUES)
        elif action == "delete":
            del out[key]
        elif action == "rename":
            out[key + "_"] = out.pop(key)
        else:
            out[key] = mutate_value(data[key], draw)
        return out
    if isinstance(data, list) and data:
        i = draw(st.integers(0, len(data) - 1))
        out = list(data)
        action = draw(st.sampled_from(["replace", "delete", "duplicate", "recurse", "recurse"]))
        if action == "replace":
            out[i] = draw(ODD_VALUES)
        elif action == "delete":
            del out[i]
        elif action == "duplicate":
            out.insert(i, out[i])
        else:
            out[i] = mutate_value(data[i], draw)
        return out
    return draw(ODD_VALUES)


# ---- bytes-level damage
def mutate_bytes(data: bytes, draw) -> bytes:
    action = draw(
        st.sampled_from(["truncate", "flip", "nul", "bom_crlf", "utf16", "latin1", "dup_line", "empty", "garbage"])
    )
    if action == "truncate":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if action == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            if out:
                i = draw(st.integers(0, len(out) - 1))
                out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    if action == "nul":
        i = draw(st.integers(0, len(data)))
        return data[:i] + b"\x00\xff\xfe" + data[i:]
    if action == "bom_crlf":
        return b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")
    if action == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if action == "latin1":
        return data.replace(b"plus", "pl\u00fcs".encode("latin-1")).replace(b"Add", "\u00c4dd".encode("latin-1"))
    if action == "dup_line":
        lines = data.splitlines(keepends=True)
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        return b"".join(lines[: i + 1] + lines[i:])
    if action == "empty":
        return b""
    return draw(st.binary(min_size=1, max_size=200))


def mutate_rows(suffix: str, data: bytes, draw) -> bytes:
    """Structure-level damage for the row formats that have structure (JSON, JSONL, CSV/TSV, parquet)."""
    try:
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in data.decode().splitlines()]
            return "".join(json.dumps(r) + "\n" for r in mutate_value(rows, draw)).encode()
        if suffix == ".json":
            return json.dumps(mutate_value(json.loads(data), draw)).encode()
    except RecursionError:  # a value too deep for json.dumps itself: write the deepest JSON it can still hold
        return b"[" * 100_000 + b"]" * 100_000
    if suffix in (".csv", ".tsv"):
        lines = data.decode().splitlines()
        delimiter = "\t" if suffix == ".tsv" else ","
        cells = [line.split(delimiter) for line in lines]
        row = draw(st.integers(0, len(cells) - 1))
        choice = draw(st.sampled_from(["drop_cell", "extra_cell", "quote", "blank_header"]))
        if choice == "drop_cell" and cells[row]:
            cells[row].pop()
        elif choice == "extra_cell":
            cells[row].append("extra")
        elif choice == "quote":
            cells[row][0] = '"unterminated' + cells[row][0]
        else:
            cells[0] = [""] * len(cells[0])
        return ("\n".join(delimiter.join(c) for c in cells) + "\n").encode()
    if suffix == ".parquet":
        rows = mutate_value([dict(r) for r in MESSAGES], draw)
        rows = [r if isinstance(r, dict) else {"value": r} for r in rows] or [{"text": None}]
        try:
            return _parquet(rows)
        except Exception:  # noqa: BLE001 - pyarrow cannot mix some types in a column: keep the byte-level damage
            return mutate_bytes(data, draw)
    return mutate_bytes(data, draw)


@st.composite
def broken_file(draw, suffix: str) -> bytes:
    data = valid_files()[suffix]
    if draw(st.booleans()):
        return mutate_rows(suffix, data, draw)
    return mutate_bytes(data, draw)


def valid_config(data_path: Path, model: str, output_dir: Path) -> dict:
    return {
        "run": {"name": "fuzz", "output_dir": str(output_dir)},
        "model": {"name_or_path": model},
        "data": {"sources": [{"path": str(data_path)}], "max_length": 64, "split": {"val": 0.2, "test": 0.2}},
        "train": {"mode": "lora", "batch_size": 2, "grad_accum": 1, "smoke_steps": 1, "smoke_examples": 4},
        "lora": {"r": 4},
        "eval": {"metrics": ["loss"]},
        "tracking": {"report_to": ["none"]},
    }


@st.composite
def broken_config_text(draw, config: dict) -> tuple[str, bytes]:
    """(suffix, file bytes): the config with one or two value-level mutations, then maybe byte-level damage."""
    mutated: object = config
    for _ in range(draw(st.integers(1, 2))):
        mutated = mutate_value(mutated, draw)
    suffix = draw(st.sampled_from([".yaml", ".json"]))
    import yaml

    try:
        text = json.dumps(mutated) if suffix == ".json" else yaml.safe_dump(mutated)
    except (ValueError, RecursionError):
        text = json.dumps(config)
    if draw(st.integers(0, 3)) == 0:
        return suffix, mutate_bytes(text.encode(), draw)
    if draw(st.integers(0, 3)) == 0 and suffix == ".yaml":  # a duplicated key
        lines = text.splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        text = "\n".join(lines[: i + 1] + lines[i:]) + "\n"
    return suffix, text.encode()
