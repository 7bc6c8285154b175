"""`data check`: stream every row of a file or a config's sources and report each problem as FILE:LINE.

Memory stays bounded: rows are read one at a time, only a 16-byte digest per row is kept (for exact
duplicates), and at most MAX_KEPT problems are stored (all are counted).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tunesmith.config.load import load_config
from tunesmith.config.schema import ModelConfig
from tunesmith.data import preference
from tunesmith.data.formats import (
    DETECT_ROWS,
    FORMAT_KEYS,
    ROLES,
    SHAREGPT_TAGS,
    TURN_KEYS,
    FormatSpec,
    candidate_formats,
    rename_columns,
    to_internal,
)
from tunesmith.data.sources import (
    TOO_DEEP,
    extra_fields,
    hub_rows,
    iter_parquet,
    list_files,
    looks_like_config,
    resolve_source,
    table_kind,
)
from tunesmith.data.stats import count_tokens
from tunesmith.errors import DataError
from tunesmith.model.load import is_tiny, tokenizer_for

MAX_KEPT = 1000


@dataclass
class Problem:
    """One problem at a place in a file; prints like a compiler message."""

    path: str
    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class CheckResult:
    """Problems found (the first MAX_KEPT), how many of each kind, rows and files read, formats seen."""

    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    rows: int = 0
    files: int = 0
    formats: Counter = field(default_factory=Counter)  # rows per detected (or set) format
    labels: Counter = field(default_factory=Counter)  # unpaired preference rows per boolean label
    first_labelled: tuple[str, int] | None = None  # where the first labelled row is (for the one-class problem)
    cut: list[Problem] = field(default_factory=list)  # rows a config's data.truncation will cut (not problems)
    cut_count: int = 0
    truncation: str | None = None

    def add(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        if len(self.problems) < MAX_KEPT:
            self.problems.append(problem)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def check_label_classes(self) -> None:
        """Add the set-level KTO problem (every row has the same label) once all files are read."""
        message = preference.label_counts_problem(dict(self.labels))
        if message and self.first_labelled:
            self.add(Problem(self.first_labelled[0], self.first_labelled[1], "one-label-class", message))

    def add_cut(self, row: Problem, truncation: str) -> None:
        self.cut_count += 1
        self.truncation = truncation
        if len(self.cut) < 3:
            self.cut.append(row)

    def notes(self) -> list[str]:
        """What the check saw that training handles by the config's rules (not problems)."""
        if not self.cut_count:
            return []
        action = "dropped" if self.truncation == "drop" else f"cut from the {self.truncation}"
        first = "; ".join(str(row) for row in self.cut)
        return [
            f"note: {self.cut_count} row{'s' * (self.cut_count != 1)} longer than max_length will be {action} "
            f"(data.truncation: {self.truncation}): {first}",
            "      `tunesmith data stats CONFIG` shows how many lose trained tokens; raise data.max_length to keep them",
        ]

    def summary(self) -> str:
        where = f"{self.rows} rows in {self.files} file{'s' * (self.files != 1)}"
        fits = [preference.describe(fmt) for fmt in self.formats if fmt in preference.PREFERENCE_FORMATS]
        where += f" of {' and '.join(fits)}" if fits else ""
        if not self.total:
            return f"{where}, no problems"
        kinds = ", ".join(f"{kind} {n}" for kind, n in self.counts.most_common())
        return f"{self.total} problem{'s' * (self.total != 1)} in {where} ({kinds})"


@dataclass
class LengthCheck:
    """Tokenizer and limit for the 'longer than max_length' check (only when a config names the model)."""

    tokenizer: object
    max_length: int
    truncation: str | None = None  # a config's data.truncation: long rows are then handled, noted not flagged


def check_paths(
    paths: list[Path],
    spec: FormatSpec | None = None,
    length: LengthCheck | None = None,
    result: CheckResult | None = None,
) -> CheckResult:
    """Check files or folders (each file on its own: own format detection, shared duplicate digests)."""
    result = result or CheckResult()
    seen: dict[bytes, tuple[str, int]] = {}
    for path in paths:
        try:
            files = list_files(path) if path.exists() else []
        except DataError as exc:
            result.add(Problem(str(path), 1, "empty", exc.message))
            continue
        if not files:
            result.add(Problem(str(path), 1, "missing-file", "no such file or folder"))
        for file in files:
            check_file(file, spec or FormatSpec(), length, result, seen)
    result.check_label_classes()
    return result


def check_file(
    path: Path,
    spec: FormatSpec,
    length: LengthCheck | None,
    result: CheckResult,
    seen: dict[bytes, tuple[str, int]],
    method: str | None = None,
) -> None:
    """Every row of one file: parse problems, then format, structure, duplicates and length (and fit for `method`)."""
    result.files += 1
    checker = RowChecker(str(path), spec, length, result, seen, method)
    count, first = 0, len(result.problems)
    for line, row, parse_problem in iter_raw_rows(path):
        count += 1
        if parse_problem:
            result.rows += 1
            result.add(Problem(str(path), line, parse_problem[0], parse_problem[1]))
        else:
            checker.feed(line, row)
    checker.flush()
    result.problems[first:] = sorted(result.problems[first:], key=lambda p: p.line)  # stable: kinds keep their order
    if count == 0:
        result.add(Problem(str(path), 1, "empty-file", "empty file: no rows"))


def iter_raw_rows(path: Path) -> Iterator[tuple[int, object, tuple[str, str] | None]]:
    """(line, row, None) or (line, None, (kind, message)) for every row of a file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".txt"):
        yield from _jsonl_lines(path, as_text=suffix == ".txt")
    elif suffix == ".json":
        yield from _json_array(path)
    elif suffix in (".csv", ".tsv"):
        yield from _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        yield from _parquet_rows(path)
    else:
        yield 1, None, ("unsupported", f"unsupported file type '{suffix}'")


def _jsonl_lines(path: Path, as_text: bool) -> Iterator[tuple[int, object, tuple[str, str] | None]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a byte-order mark may open the file
            except UnicodeDecodeError as exc:
                yield (
                    number,
                    None,
                    ("invalid-utf8", f"invalid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"),
                )
                continue
            if not line.strip():
                continue
            if as_text:
                yield number, {"text": line.rstrip("\r\n")}, None
                continue
            try:
                yield number, json.loads(line.rstrip("\r\n")), None
            except json.JSONDecodeError as exc:
                yield number, None, ("invalid-json", f"invalid JSON at column {exc.colno}: {exc.msg}")
            except RecursionError:
                yield number, None, ("invalid-json", TOO_DEEP)


def _json_array(path: Path) -> Iterator[tuple[int, object, tuple[str, str] | None]]:
    """Elements of a JSON array file, each with the line it starts on."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield 1, None, ("invalid-utf8", f"invalid UTF-8 at byte {exc.start}")
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield exc.lineno, None, ("invalid-json", f"invalid JSON at column {exc.colno}: {exc.msg}")
        return
    except RecursionError:
        yield 1, None, ("invalid-json", TOO_DEEP)
        return
    if not isinstance(data, list):
        yield 1, data, None
        return
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    for _ in data:
        pos = _skip(text, pos)
        row, end = decoder.raw_decode(text, pos)
        yield text.count("\n", 0, pos) + 1, row, None
        pos = _skip(text, end) + 1  # past the comma


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, object, tuple[str, str] | None]]:
    reader = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            for row in reader:
                extra = row.pop(None, None)  # DictReader files cells beyond the header under the key None
                if extra is not None:
                    yield reader.line_num, None, ("extra-fields", extra_fields(extra, reader.fieldnames))
                else:
                    yield reader.line_num, row, None
    except UnicodeDecodeError as exc:
        yield 1, None, ("invalid-utf8", f"invalid UTF-8 at byte {exc.start}")
    except csv.Error as exc:
        yield (reader.line_num if reader else 1), None, ("invalid-csv", f"unreadable {table_kind(delimiter)}: {exc}")


def _parquet_rows(path: Path) -> Iterator[tuple[int, object, tuple[str, str] | None]]:
    number = 0
    try:
        for row in iter_parquet(path):
            number += 1
            yield number, row, None
    except DataError as exc:
        yield number + 1, None, ("invalid-parquet", exc.message.removeprefix(f"{path}: "))


class RowChecker:
    """Checks rows of one file; the format is detected from the first rows when it is auto.

    With a `method` (a config's), rows whose format that method cannot train on get one problem at the first row.
    """

    def __init__(
        self,
        path: str,
        spec: FormatSpec,
        length: LengthCheck | None,
        result: CheckResult,
        seen: dict[bytes, tuple[str, int]],
        method: str | None = None,
    ):
        self.path, self.length, self.result, self.seen, self.method = path, length, result, seen, method
        self.fit_checked = False
        self.full_spec = spec  # with the system prompt: what training sees, for the length check
        self.spec = replace(spec, system_prompt=None)  # turn numbers must match the file
        self.format = None if spec.format == "auto" else spec.format
        self.pending: list[tuple[int, object]] = []

    def feed(self, line: int, row: object) -> None:
        self.result.rows += 1
        if self.format is None:
            self.pending.append((line, row))
            if len(self.pending) >= DETECT_ROWS:
                self.flush()
            return
        self._check(line, row)

    def flush(self) -> None:
        if self.format is None and self.pending:
            self.format = self._detect()
        pending, self.pending = self.pending, []
        for line, row in pending:
            self._check(line, row)

    def _detect(self) -> str:
        votes: Counter = Counter()
        for _, row in self.pending:
            if isinstance(row, dict):
                votes.update(name for name, _ in candidate_formats(rename_columns(row, self.spec.columns)))
        if not votes:
            return "unknown"
        top = votes.most_common()
        if len(top) > 1 and top[0][1] == top[1][1]:
            names = ", ".join(name for name, _ in top)
            self.result.add(
                Problem(
                    self.path, self.pending[0][0], "ambiguous-format", f"ambiguous format: rows fit {names}; set format"
                )
            )
        return top[0][0]

    def _check_method_fit(self, line: int) -> None:
        self.fit_checked = True
        message = preference.method_problem(self.method, self.format or "unknown") if self.method else None
        if message:
            self.result.add(Problem(self.path, line, "method-mismatch", message))

    def _count_label(self, line: int, row: object) -> None:
        label = rename_columns(row, self.spec.columns).get("label") if isinstance(row, dict) else None
        if isinstance(label, bool):
            self.result.labels[label] += 1
            self.result.first_labelled = self.result.first_labelled or (self.path, line)

    def _check(self, line: int, row: object) -> None:
        if not self.fit_checked:
            self._check_method_fit(line)
        self.result.formats[self.format or "unknown"] += 1
        if self.format == preference.UNPAIRED:
            self._count_label(line, row)
        for kind, message in row_problems(row, self.format or "unknown", self.spec):
            self.result.add(Problem(self.path, line, kind, message))
        digest = _digest(row)
        if digest is None:
            pass
        elif digest in self.seen:
            first_path, first_line = self.seen[digest]
            where = f"line {first_line}" if first_path == self.path else f"{first_path}:{first_line}"
            self.result.add(Problem(self.path, line, "duplicate", f"exact duplicate of {where}"))
        else:
            self.seen[digest] = (self.path, line)
        if self.length is not None and isinstance(row, dict):
            self._check_length(line, row)

    def _check_length(self, line: int, row: dict) -> None:
        try:
            example = to_internal(row, self.full_spec, self.format)
        except DataError:
            return
        tokens = count_tokens(self.length.tokenizer, [example])[0]
        if tokens <= self.length.max_length:
            return
        if self.length.truncation:
            self.result.add_cut(Problem(self.path, line, "too-long", f"{tokens} tokens"), self.length.truncation)
            return
        message = f"{tokens} tokens, longer than max_length {self.length.max_length} (would be truncated)"
        self.result.add(Problem(self.path, line, "too-long", message))


def row_problems(row: object, fmt: str, spec: FormatSpec) -> list[tuple[str, str]]:
    """(kind, message) for every problem of one parsed row."""
    if not isinstance(row, dict):
        return [("not-object", f"row is a JSON {type(row).__name__}, expected an object")]
    if fmt == "unknown":
        return [("unknown-format", f"no known format fits the keys {sorted(row)}")]
    renamed = rename_columns(row, spec.columns)
    problems = _key_problems(renamed, fmt)
    if any(kind == "missing-key" for kind, _ in problems):
        return problems
    if fmt in preference.PREFERENCE_FORMATS:
        return problems + preference.row_problems(renamed, fmt, spec)
    problems += _turn_key_problems(renamed, fmt, spec)
    try:
        example = to_internal(row, spec, fmt)
    except DataError as exc:
        kind = "unknown-role" if "unknown role" in exc.message else "invalid-row"
        kind = "non-string-content" if "content is null" in exc.message else kind
        return problems + [(kind, exc.message)]
    if "text" in example:
        return problems + ([("empty-content", "empty text")] if not example["text"].strip() else [])
    return problems + message_problems(example["messages"])


def _key_problems(row: dict, fmt: str) -> list[tuple[str, str]]:
    """Missing required keys, and unknown keys that look like a misspelt known one."""
    known = FORMAT_KEYS.get(fmt, ())
    aliases = {
        "prompt_completion": ("question", "answer", "response"),
        "messages": ("conversations",),
        "sharegpt": ("messages",),
    }
    problems = []
    for key in known[:2] if fmt in ("alpaca", "prompt_completion", "preference") else known[:1]:
        if key in row or any(a in row for a in aliases.get(fmt, ())):
            continue
        close = difflib.get_close_matches(key, [k for k in row if k not in known], n=1, cutoff=0.75)
        if close:
            problems.append(("unknown-key", f"unknown key '{close[0]}' (did you mean '{key}'?)"))
        problems.append(("missing-key", f"missing key '{key}' (format {fmt})"))
    return problems


def _turn_key_problems(row: dict, fmt: str, spec: FormatSpec) -> list[tuple[str, str]]:
    key = {"messages": "messages", "sharegpt": "conversations"}.get(fmt)
    turns = row.get(key) if key else None
    if not isinstance(turns, list):
        return []
    tags = {**SHAREGPT_TAGS, **spec.tags}
    allowed = TURN_KEYS if fmt == "messages" else {tags["role_tag"], tags["content_tag"], "weight", "loss"}
    problems = []
    for i, turn in enumerate(turns, 1):
        extra = sorted(set(turn) - allowed) if isinstance(turn, dict) else []
        if extra:
            problems.append(
                (
                    "unknown-key",
                    f"turn {i}: unknown key{'s' * (len(extra) > 1)} {', '.join(repr(k) for k in extra)} (expected {', '.join(sorted(allowed))})",
                )
            )
    return problems


def message_problems(messages: list[dict]) -> list[tuple[str, str]]:
    """Roles, content types, empty turns, turn order and the presence of an assistant turn."""
    problems = []
    for i, turn in enumerate(messages, 1):
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            problems.append(("unknown-role", f"turn {i}: unknown role {role!r} (expected {', '.join(ROLES)})"))
        if content in (None, "") and turn.get("tool_calls"):
            continue
        if not isinstance(content, str):
            problems.append(
                ("non-string-content", f"turn {i} ({role}): content is {_json_type(content)}, expected a string")
            )
        elif not content.strip():
            problems.append(("empty-content", f"turn {i} ({role}): empty content"))
    problems += _order_problems([m.get("role") for m in messages])
    if not any(m.get("role") == "assistant" for m in messages):
        problems.append(("no-assistant", "no assistant turn: nothing to train on"))
    return problems


def _order_problems(roles: list) -> list[tuple[str, str]]:
    problems = []
    previous = None
    for i, role in enumerate(roles, 1):
        if role == "system" and i > 1:
            problems.append(("turn-order", f"turn {i}: system turn after the first turn"))
        elif role == "assistant" and previous in (None, "system"):
            problems.append(("turn-order", f"turn {i}: conversation starts with an assistant turn"))
        elif role in ("user", "assistant") and role == previous:
            problems.append(("turn-order", f"turn {i}: two '{role}' turns in a row"))
        elif role == "tool" and previous not in ("assistant", "tool"):
            problems.append(("turn-order", f"turn {i}: tool turn not after an assistant tool call"))
        previous = role
    return problems


def check_config(config, overrides: list[str] | None = None, with_length: bool = True) -> CheckResult:
    """Check every source of a config (a Config or a config file) with its declared format.

    Rows longer than data.max_length are noted (data.truncation says what training does with them) when the
    model's tokenizer can be loaded; `tiny:` models are skipped there because their tokenizer is trained from
    the run's data at training time.
    """
    if not hasattr(config, "data"):
        config = load_config(config, overrides)
    length = None
    model = config.model
    if with_length and not is_tiny(model.name_or_path):
        length = LengthCheck(tokenizer_for(model), config.data.max_length, config.data.truncation)
    result, seen = CheckResult(), {}
    for source in config.data.sources:
        resolved = resolve_source(source)
        if resolved.spec.system_prompt is None:
            resolved.spec.system_prompt = config.data.system_prompt
        for file in resolved.files or []:
            check_file(file, resolved.spec, length, result, seen, config.method)
        if resolved.hub:
            result.files += 1
            checker = RowChecker(resolved.label, resolved.spec, length, result, seen, config.method)
            for number, row in enumerate(hub_rows(resolved.hub), 1):
                checker.feed(number, row)
            checker.flush()
    result.check_label_classes()
    return result


def check_target(
    target: str,
    fmt: str = "auto",
    model: str | None = None,
    max_length: int = 1024,
    chat_template: str = "auto",
    overrides: list[str] | None = None,
) -> CheckResult:
    """`data check` on a data file/folder or a config file (YAML, or JSON holding config sections)."""
    path = Path(target)
    if not path.exists():
        raise DataError(f"{target}: no such file or folder")
    if looks_like_config(path):
        return check_config(path, overrides)
    length = (
        LengthCheck(tokenizer_for(ModelConfig(name_or_path=model), chat_template=chat_template), max_length)
        if model
        else None
    )
    return check_paths([path], FormatSpec(format=fmt), length)


def _digest(row: object) -> bytes | None:
    """A 16-byte digest of a row for the duplicate check (None for a row too deep to serialise)."""
    try:
        text = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    except (RecursionError, TypeError, ValueError):
        return None
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _json_type(value) -> str:
    """The JSON name of a parsed value's type, as the user wrote it (null, number, object, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {"dict": "an object", "list": "an array"}.get(type(value).__name__, type(value).__name__)
