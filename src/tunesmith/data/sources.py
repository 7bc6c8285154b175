"""Read raw rows from a source: local files and folders, Hugging Face datasets, LLaMA-Factory dataset_info entries."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from tunesmith.config.schema import SourceConfig
from tunesmith.data.formats import FormatSpec
from tunesmith.errors import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")
TOO_DEEP = "invalid JSON: nested too deeply to read"
# Long documents in a CSV cell are legitimate; the csv module's default 128 KiB cell limit is not a data rule.
csv.field_size_limit(2**31 - 1)
# LLaMA-Factory column roles -> our column names (chosen/rejected: `ranking` sets; kto_tag: KTO's boolean label).
LF_PREFERENCE = {"chosen": "chosen", "rejected": "rejected", "kto_tag": "label"}
LF_ALPACA = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "system": "system",
    "history": "history",
    **LF_PREFERENCE,
}
LF_SHAREGPT = {"messages": "conversations", "system": "system", "tools": "tools", **LF_PREFERENCE}


@dataclass
class ResolvedSource:
    """Where one source's rows live and how to read them."""

    label: str
    spec: FormatSpec
    files: list[Path] | None = None  # local files, else a hub dataset
    hub: dict | None = None


def resolve_source(source: SourceConfig, base_dir: Path | None = None) -> ResolvedSource:
    """Files or hub arguments plus the format spec (a dataset_info entry fills path, format, columns and tags)."""
    spec = FormatSpec(
        source.format, dict(source.columns), {}, source.template.model_dump() if source.template else None
    )
    spec.system_prompt = source_system_prompt(source, base_dir)
    path = source.path
    if source.dataset_info:
        path = _apply_dataset_info(source, spec, base_dir)
    assert path is not None  # the schema requires path or dataset
    local = _local(path, base_dir)
    label = source.dataset or path
    if local is not None:
        return ResolvedSource(label, spec, files=list_files(local))
    hub = {"path": path, "name": source.name, "split": source.split, "data_files": source.data_files}
    return ResolvedSource(label, spec, hub=hub)


def _local(path: str, base_dir: Path | None) -> Path | None:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and base_dir is not None and not candidate.exists():
        candidate = base_dir / candidate
    if candidate.exists():
        return candidate
    if candidate.suffix in SUFFIXES or path.startswith((".", "/", "~")):
        raise DataError(
            f"{path}: no such file or folder",
            hint="check the source path (relative paths start at the working directory)",
        )
    return None


def source_system_prompt(source: SourceConfig, base_dir: Path | None = None) -> str | None:
    """A source's own system prompt: `system_prompt`, or the text of `system_prompt_file`."""
    if source.system_prompt_file is None:
        return source.system_prompt
    path = _find_file(source.system_prompt_file, base_dir)
    if path is None:
        raise DataError(f"system_prompt_file {source.system_prompt_file}: no such file")
    return path.read_text(encoding="utf-8").strip()


def _find_file(name: str, base_dir: Path | None) -> Path | None:
    """`name` relative to the working directory, else to `base_dir` (the config's folder); None if neither."""
    candidates = [Path(name)] + ([base_dir / name] if base_dir is not None else [])
    return next((p for p in candidates if p.is_file()), None)


def _apply_dataset_info(source: SourceConfig, spec: FormatSpec, base_dir: Path | None) -> str:
    """Fill spec from a LLaMA-Factory dataset_info.json entry; return the data path (file or hub id)."""
    info_path = _find_file(source.dataset_info or "", base_dir)
    if info_path is None:
        raise DataError(f"dataset_info {source.dataset_info}: no such file")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    if source.dataset not in info:
        raise DataError(
            f"{info_path}: no entry '{source.dataset}'", hint=f"{len(info)} entries, e.g. {', '.join(list(info)[:5])}"
        )
    entry = info[source.dataset]
    columns = entry.get("columns", {})
    layout = entry.get("formatting", "alpaca")  # how the columns are laid out, also for preference sets
    if spec.format == "auto":
        is_pretrain = layout == "alpaca" and set(columns) == {"prompt"}
        spec.format = "text" if is_pretrain else layout
        if entry.get("ranking"):
            spec.format = "preference"
        elif "kto_tag" in columns:
            spec.format = "unpaired_preference"
    mapping = {"text": {"prompt": "text"}, "sharegpt": LF_SHAREGPT}.get(
        spec.format if spec.format in ("text", "sharegpt") else layout, LF_ALPACA
    )
    renames = {mapping[k]: v for k, v in columns.items() if k in mapping}
    spec.columns = {**renames, **spec.columns}
    spec.tags = {k: v for k, v in entry.get("tags", {}).items()}
    if "file_name" in entry:
        return str(info_path.parent / entry["file_name"])
    hub = entry.get("hf_hub_url")
    if not hub:
        raise DataError(f"{info_path}: entry '{source.dataset}' has neither file_name nor hf_hub_url")
    return hub


CONFIG_SECTIONS = {
    "run",
    "model",
    "data",
    "method",
    "lora",
    "quantization",
    "train",
    "grpo",
    "preference",
    "eval",
    "export",
    "tracking",
}


def looks_like_config(path: Path) -> bool:
    """A YAML file, or a JSON object whose keys are config sections (a data .json is a list or a row)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        return True
    if path.suffix.lower() != ".json" or not path.is_file() or path.stat().st_size > 1_000_000:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and bool(data) and set(data) <= CONFIG_SECTIONS


def list_files(path: Path) -> list[Path]:
    """A file, or every supported file in a folder (recursively, sorted)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(f"{path}: the folder has no {'/'.join(SUFFIXES)} files")
    return files


def iter_file_rows(path: Path) -> Iterator[dict]:
    """Rows of one local file; a parse error names FILE:LINE(:COL)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _jsonl_rows(path)
    elif suffix == ".json":
        yield from _json_rows(path)
    elif suffix in (".csv", ".tsv"):
        yield from _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        yield from iter_parquet(path)
    elif suffix == ".txt":
        with path.open(encoding="utf-8-sig") as f:
            yield from ({"text": line.rstrip("\r\n")} for line in f if line.strip())
    else:
        raise DataError(f"{path}: unsupported file type '{suffix}'", hint=f"use one of {', '.join(SUFFIXES)}")


def _jsonl_rows(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8-sig") as f:  # -sig: a byte-order mark may open the file
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}:{number}:{exc.colno}: invalid JSON: {exc.msg}",
                        hint=f"run `tunesmith data check {path}`",
                    ) from None
                except RecursionError:
                    raise DataError(f"{path}:{number}: {TOO_DEEP}") from None


def _csv_rows(path: Path, delimiter: str) -> Iterator[dict]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        try:
            for row in reader:
                if None in row:  # DictReader files cells beyond the header under the key None
                    where = f"{path}:{reader.line_num}"
                    hint = "quote cells that hold the delimiter, or fix the header"
                    raise DataError(f"{where}: {extra_fields(row[None], reader.fieldnames)}", hint=hint)
                yield row
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: unreadable {table_kind(delimiter)}: {exc}") from None


def table_kind(delimiter: str) -> str:
    return "TSV" if delimiter == "\t" else "CSV"


def extra_fields(extra: list, header) -> str:
    return f"{len(extra)} more field{'s' * (len(extra) != 1)} than the header's {len(header or [])} columns"


def iter_parquet(path: Path) -> Iterator[dict]:
    """Rows of a parquet file; a damaged file is a DataError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches():
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        hint = "rewrite it, or convert it to .jsonl"
        raise DataError(f"{path}: not a readable parquet file ({reason})", hint=hint) from None


def _json_rows(path: Path) -> Iterator[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: {TOO_DEEP}") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    yield from data if isinstance(data, list) else [data]  # a lone scalar is one (invalid) row, reported as such


def read_rows(
    resolved: ResolvedSource, limit: int | None = None, sample: int | None = None, seed: int = 0
) -> list[dict]:
    """The raw rows of a source; `limit` takes the first N, `sample` N at random (seeded)."""
    rows_iter = hub_rows(resolved.hub) if resolved.hub else (r for f in resolved.files or [] for r in iter_file_rows(f))
    if limit is not None:
        return list(islice(rows_iter, limit))
    rows = list(rows_iter)
    if sample is not None and sample < len(rows):
        keep = sorted(random.Random(seed).sample(range(len(rows)), sample))
        rows = [rows[i] for i in keep]
    return rows


def hub_rows(hub: dict) -> Iterator[dict]:
    """Rows of a Hugging Face dataset (the local cache works offline)."""
    import datasets

    try:
        dataset = datasets.load_dataset(
            hub["path"], hub.get("name"), split=hub.get("split") or "train", data_files=hub.get("data_files")
        )
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for a missing/offline dataset
        raise DataError(
            f"cannot load hub dataset '{hub['path']}': {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="check the id, name and split; offline, the dataset must already be in the Hugging Face cache",
        ) from None
    yield from dataset
