"""Row formats -> the internal shape: {"messages": [...], "meta": {...}} or {"text": ..., "meta": {...}}.

Formats: messages (OpenAI/ChatML role+content, system and tool turns), sharegpt (from/value, with
LLaMA-Factory's tag mapping), alpaca (instruction/input/output, optional system/history), prompt_completion
(strings or message lists), text, and template (format strings over columns). `detect_format` explains its
choice and refuses to guess between several.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunesmith.data.example import Example
from tunesmith.errors import DataError

DETECT_ROWS = 20  # rows that `format: auto` looks at

ROLES = ("system", "user", "assistant", "tool")
TURN_KEYS = {"role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content", "thinking", "weight"}
SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
# Column names each format reads (after `columns` renaming); the first of each tuple is required.
FORMAT_KEYS = {
    "messages": ("messages",),
    "sharegpt": ("conversations", "system", "tools"),
    "alpaca": ("instruction", "output", "input", "system", "history"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}
REQUIRED_KEYS = {"messages": ("messages",), "sharegpt": ("conversations",), "alpaca": ("instruction", "output"),
                 "prompt_completion": ("prompt", "completion"), "text": ("text",)}
# Common aliases auto-detection accepts for prompt_completion (GSM8K: question/answer).
PROMPT_ALIASES = (("prompt", "completion"), ("question", "answer"), ("prompt", "response"))


@dataclass
class FormatSpec:
    """How to read the rows of one source: the format, column renames, ShareGPT tags, turn templates."""

    format: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)  # {expected_name: column_in_file}
    tags: dict[str, str] = field(default_factory=dict)
    template: dict[str, str | None] | None = None
    system_prompt: str | None = None


def rename_columns(row: dict, columns: dict[str, str]) -> dict:
    """Apply {expected_name: column_in_file}; the original row is left untouched."""
    if not columns:
        return row
    out = dict(row)
    for expected, actual in columns.items():
        if actual in row and expected != actual:
            out[expected] = out.pop(actual)
    return out


def candidate_formats(row: dict) -> list[tuple[str, str]]:
    """Every format this row could be, each with the reason ("sharegpt: key 'conversations' with from/value")."""
    found: list[tuple[str, str]] = []
    for key in ("messages", "conversations"):
        turns = row.get(key)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            if "from" in turns[0] and "value" in turns[0]:
                found.append(("sharegpt", f"key '{key}' with from/value turns"))
            elif "role" in turns[0]:
                found.append(("messages", f"key '{key}' with role/content turns"))
    if "instruction" in row and "output" in row:
        found.append(("alpaca", "keys 'instruction' and 'output'"))
    for prompt, completion in PROMPT_ALIASES:
        if prompt in row and completion in row:
            found.append(("prompt_completion", f"keys '{prompt}' and '{completion}'"))
            break
    if isinstance(row.get("text"), str):
        found.append(("text", "key 'text' with a string"))
    return found


def detect_format(rows: list[dict], where: str = "data") -> tuple[str, str]:
    """(format, reason) from the first rows; an error when none or several formats fit."""
    seen: dict[str, str] = {}
    for row in rows:
        for name, reason in candidate_formats(row) if isinstance(row, dict) else []:
            seen.setdefault(name, reason)
    if len(seen) == 1:
        name, reason = next(iter(seen.items()))
        return name, f"{name}: {reason}"
    keys = sorted({k for row in rows if isinstance(row, dict) for k in row})
    if not seen:
        raise DataError(
            f"{where}: cannot detect the format from the keys {keys}",
            hint="set the source's format (messages, sharegpt, alpaca, prompt_completion, text, template) and columns",
        )
    listed = "; ".join(f"{n} ({r})" for n, r in seen.items())
    raise DataError(f"{where}: ambiguous format, the rows fit several: {listed}", hint="set the source's format explicitly")


def normalize_aliases(row: dict, fmt: str) -> dict:
    """Map the auto-detected aliases (question/answer, conversations with roles) onto the format's keys."""
    if fmt == "prompt_completion" and not ("prompt" in row and "completion" in row):
        for prompt, completion in PROMPT_ALIASES[1:]:
            if prompt in row and completion in row:
                return {**row, "prompt": row[prompt], "completion": row[completion]}
    if fmt == "messages" and "messages" not in row and "conversations" in row:
        return {**row, "messages": row["conversations"]}
    if fmt == "sharegpt" and "conversations" not in row and "messages" in row:
        return {**row, "conversations": row["messages"]}
    return row


def to_internal(row: dict, spec: FormatSpec, fmt: str | None = None) -> Example:
    """One raw row -> the internal shape. Raises DataError naming what is missing or wrong."""
    if not isinstance(row, dict):
        raise DataError(f"a row must be a JSON object, got {type(row).__name__}")
    fmt = fmt or spec.format
    renamed = normalize_aliases(rename_columns(row, spec.columns), fmt)
    for key in REQUIRED_KEYS.get(fmt, ()):
        if key not in renamed:
            raise DataError(f"missing key '{key}' for format {fmt}")
    converter = CONVERTERS.get(fmt)
    if converter is None:
        raise DataError(f"unknown format '{fmt}'")
    example = converter(renamed, spec)
    _require_content(example)
    meta = {k: v for k, v in row.items() if not (k in ("messages", "conversations") and isinstance(v, list))}
    example["meta"] = meta
    if "messages" in example and spec.system_prompt and not any(m.get("role") == "system" for m in example["messages"]):
        example["messages"].insert(0, {"role": "system", "content": spec.system_prompt})
    return example


def _require_content(example: dict) -> None:
    """Every turn has content (an empty cell or a null reaches the chat template as no content at all)."""
    for i, turn in enumerate(example.get("messages") or [], 1):
        if turn.get("content") is None and not turn.get("tool_calls"):
            raise DataError(f"turn {i} ({turn.get('role')}): content is null, expected a string")


def _messages(row: dict, spec: FormatSpec) -> dict:
    turns = row["messages"]
    if not isinstance(turns, list):
        raise DataError(f"'messages' must be a list of turns, got {type(turns).__name__}")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise DataError(f"turn {i + 1} must be an object with role and content, got {type(turn).__name__}")
        kept = {k: v for k, v in turn.items() if k in TURN_KEYS}
        if kept.get("content") is None and kept.get("tool_calls"):
            kept["content"] = ""  # templates index message['content'] even on tool-call turns
        out.append(kept)
    return {"messages": out}


def _sharegpt(row: dict, spec: FormatSpec) -> dict:
    tags = {**SHAREGPT_TAGS, **spec.tags}
    roles = {
        tags["user_tag"]: "user", tags["assistant_tag"]: "assistant", tags["system_tag"]: "system",
        tags["observation_tag"]: "tool", tags["function_tag"]: "assistant",
        "human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant", "tool": "tool",
    }
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise DataError(f"'conversations' must be a list of turns, got {type(turns).__name__}")
    messages = []
    if isinstance(row.get("system"), str) and row["system"]:
        messages.append({"role": "system", "content": row["system"]})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or tags["role_tag"] not in turn:
            raise DataError(f"turn {i + 1} has no '{tags['role_tag']}' key")
        role = turn[tags["role_tag"]]
        if role not in roles:
            raise DataError(f"turn {i + 1}: unknown role '{role}' (expected one of {', '.join(sorted(set(roles)))})")
        messages.append({"role": roles[role], "content": turn.get(tags["content_tag"])})
    return {"messages": messages}


def _alpaca(row: dict, spec: FormatSpec) -> dict:
    messages = []
    if row.get("system"):
        messages.append({"role": "system", "content": row["system"]})
    for pair in row.get("history") or []:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise DataError("'history' must be a list of [user, assistant] pairs")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    instruction, extra = row["instruction"], row.get("input")
    user = f"{instruction}\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    return {"messages": messages}


def _prompt_completion(row: dict, spec: FormatSpec) -> dict:
    prompt, completion = row["prompt"], row["completion"]
    head = _messages({"messages": prompt}, spec)["messages"] if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    tail = (
        _messages({"messages": completion}, spec)["messages"]
        if isinstance(completion, list)
        else [{"role": "assistant", "content": completion}]
    )
    return {"messages": head + tail}


def _text(row: dict, spec: FormatSpec) -> dict:
    if not isinstance(row["text"], str):
        raise DataError(f"'text' must be a string, got {type(row['text']).__name__}")
    return {"text": row["text"]}


def _template(row: dict, spec: FormatSpec) -> dict:
    if not spec.template:
        raise DataError("format template needs template: {user: ..., assistant: ...}")
    messages = []
    for role in ("system", "user", "assistant"):
        pattern = spec.template.get(role)
        if pattern is None:
            continue
        try:
            messages.append({"role": role, "content": pattern.format_map(row)})
        except KeyError as exc:
            raise DataError(f"template.{role} uses column {exc} which the row lacks (columns: {sorted(row)})") from None
    return {"messages": messages}


CONVERTERS = {
    "messages": _messages,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt_completion": _prompt_completion,
    "text": _text,
    "template": _template,
}
