"""Row formats -> the internal shape: {"messages": [...], "meta": {...}} or {"text": ..., "meta": {...}}.

Formats: messages (OpenAI/ChatML role+content, system and tool turns), sharegpt (from/value, with
LLaMA-Factory's tag mapping), alpaca (instruction/input/output, optional system/history), prompt_completion
(strings or message lists), text, template (format strings over columns), and the preference shapes of
data/preference.py (preference: chosen/rejected pairs; unpaired_preference: a completion with a boolean label).
`detect_format` explains its choice and refuses to guess between several.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tunesmith.data import preference
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
    "preference": ("chosen", "rejected", "prompt", "conversations", "messages", "instruction", "input", "system"),
    "unpaired_preference": (
        "label",
        "messages",
        "conversations",
        "prompt",
        "completion",
        "instruction",
        "output",
        "system",
    ),
}
REQUIRED_KEYS = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
    "preference": ("chosen", "rejected"),
    "unpaired_preference": ("label",),
}
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
    paired_or_labelled = preference.preference_candidate(row)
    if paired_or_labelled:  # a conversation next to chosen/rejected (or a label) is a prompt, not SFT data
        return [paired_or_labelled]
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
            hint="set the source's format (messages, sharegpt, alpaca, prompt_completion, text, template, preference, "
            "unpaired_preference) and columns",
        )
    listed = "; ".join(f"{n} ({r})" for n, r in seen.items())
    raise DataError(
        f"{where}: ambiguous format, the rows fit several: {listed}", hint="set the source's format explicitly"
    )


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
    consumed = preference.CONSUMED if fmt in preference.PREFERENCE_FORMATS else ()
    meta = {
        k: v
        for k, v in row.items()
        if k not in consumed and k != "tools" and not (k in ("messages", "conversations") and isinstance(v, list))
    }
    example["meta"] = meta
    if "prompt" in example and spec.system_prompt:
        return preference.add_system_prompt(example, spec.system_prompt)
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
        if isinstance(kept.get("tool_calls"), list):
            kept["tool_calls"] = [_openai_call(c) for c in kept["tool_calls"]]
        out.append(kept)
    return {"messages": out, **tools_of(row)}


def _openai_call(call):
    """An OpenAI tool call with its `arguments` JSON string parsed, as HF chat templates expect an object."""
    if isinstance(call, dict) and isinstance(call.get("function"), dict):
        return {
            **call,
            "function": {**call["function"], "arguments": _arguments(call["function"].get("arguments", {}))},
        }
    return call


def _sharegpt(row: dict, spec: FormatSpec) -> dict:
    tags = {**SHAREGPT_TAGS, **spec.tags}
    roles = {
        tags["user_tag"]: "user",
        tags["assistant_tag"]: "assistant",
        tags["system_tag"]: "system",
        tags["observation_tag"]: "tool",
        tags["function_tag"]: "assistant",
        "human": "user",
        "gpt": "assistant",
        "user": "user",
        "assistant": "assistant",
        "tool": "tool",
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
        content = turn.get(tags["content_tag"])
        if role == tags["function_tag"]:
            _add_tool_calls(messages, parse_tool_calls(content, i + 1))
        else:
            messages.append({"role": roles[role], "content": content})
    return {"messages": messages, **tools_of(row)}


def parse_tool_calls(value, turn: int) -> list[dict]:
    """LLaMA-Factory's function_call value ('{"name": ..., "arguments": {...}}' or a list) -> OpenAI tool_calls."""
    import json

    try:
        calls = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise DataError(f"turn {turn}: the function_call value is not JSON ({exc.msg})") from None
    calls = calls if isinstance(calls, list) else [calls]
    if not calls or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        raise DataError(f'turn {turn}: a function_call value needs {{"name": ..., "arguments": {{...}}}}')
    return [
        {"type": "function", "function": {"name": c["name"], "arguments": _arguments(c.get("arguments", {}))}}
        for c in calls
    ]


def _arguments(value):
    """Arguments as an object: chat templates write them with `tojson`, so a JSON string would be quoted twice."""
    import json

    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def _add_tool_calls(messages: list[dict], calls: list[dict]) -> None:
    """Calls join the assistant turn right before them (text + call), else open an assistant turn of their own."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
        last["tool_calls"] = calls
    else:
        messages.append({"role": "assistant", "content": "", "tool_calls": calls})


def tools_of(row: dict) -> dict:
    """{'tools': [...]} in the OpenAI/HF shape from a row's `tools` (a JSON string or a list), or {}."""
    import json

    tools = row.get("tools")
    if tools in (None, "", []):
        return {}
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise DataError(f"'tools' is not valid JSON ({exc.msg})") from None
    tools = tools if isinstance(tools, list) else [tools]
    if not all(isinstance(t, dict) for t in tools):
        raise DataError("'tools' must be a list of function schemas (objects with name, description, parameters)")
    return {
        "tools": [
            t if t.get("type") == "function" and "function" in t else {"type": "function", "function": t} for t in tools
        ]
    }


def _alpaca(row: dict, spec: FormatSpec) -> dict:
    messages = []
    if row.get("system"):
        messages.append({"role": "system", "content": row["system"]})
    for pair in row.get("history") or []:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise DataError("'history' must be a list of [user, assistant] pairs")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    instruction, extra = row["instruction"], row.get("input")
    both = isinstance(instruction, str) and isinstance(extra, str) and extra.strip()
    user = f"{instruction}\n{extra}" if both else instruction  # a null instruction stays null (reported), never "None"
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
    return {"messages": messages}


def _prompt_completion(row: dict, spec: FormatSpec) -> dict:
    prompt, completion = row["prompt"], row["completion"]
    head = (
        _messages({"messages": prompt}, spec)["messages"]
        if isinstance(prompt, list)
        else [{"role": "user", "content": prompt}]
    )
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
        for column in template_columns(pattern):
            if column not in row:
                raise DataError(
                    f"template.{role} uses column '{column}' which the row lacks; {columns_hint(column, row)}"
                )
            if row[column] is None:
                raise DataError(f"template.{role}: column '{column}' is null (it would be trained as the text 'None')")
        messages.append({"role": role, "content": pattern.format_map(row)})
    return {"messages": messages}


def template_columns(pattern: str) -> list[str]:
    """The column names a format string reads ('{title} {questions}' -> ['title', 'questions'])."""
    import string

    names = []
    for _, field_name, _, _ in string.Formatter().parse(pattern):
        if field_name:
            names.append(field_name.split(".")[0].split("[")[0])
    return list(dict.fromkeys(names))


def columns_hint(column: str, row: dict) -> str:
    """'the row has: a, b (did you mean 'b'?)' for a column name a row lacks."""
    import difflib

    present = sorted(str(k) for k in row)
    close = difflib.get_close_matches(column, present, n=1, cutoff=0.5)
    if not close:  # camelCase parts: questionBody -> questions
        parts = [p.lower() for p in re.findall(r"[a-z]+|[A-Z][a-z]*", column)]
        close = [k for k in present if any(p and k.lower().startswith(p) for p in parts)][:1]
    return f"the row has: {', '.join(present)}" + (f" (did you mean '{close[0]}'?)" if close else "")


def require_no_nulls(example: dict) -> None:
    """Refuse a null turn content or text: templates would render it as the literal text 'None'."""
    if "text" in example and example["text"] is None:
        raise DataError("'text' is null")
    for i, turn in enumerate(example.get("messages") or [], 1):
        if turn.get("content") is None and not turn.get("tool_calls"):
            raise DataError(
                f"turn {i} ({turn.get('role')}): content is null",
                hint="fill or drop the row; nulls are never trained as text",
            )


CONVERTERS = {
    "messages": _messages,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "prompt_completion": _prompt_completion,
    "text": _text,
    "template": _template,
    "preference": lambda row, spec: preference.convert_paired(row, spec),
    "unpaired_preference": lambda row, spec: preference.convert_unpaired(row, spec),
}
