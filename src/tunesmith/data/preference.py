"""Preference rows -> the internal preference shapes, and their row checks.

Paired (`format: preference`), read from any of:
- LLaMA-Factory pairwise: `conversations` (ShareGPT from/value, or OpenAI role/content through its tags)
  plus `chosen` / `rejected` single turns; its alpaca form `instruction` (+ `input`) plus string answers;
- TRL: `prompt` plus `chosen` / `rejected`, each a string or a list of messages; with the prompt implicit
  (chosen and rejected are whole conversations that share everything but the last assistant turns).

Unpaired (`format: unpaired_preference`, KTO): a conversation (`messages` / `conversations`) or TRL's
`prompt` + `completion`, or alpaca `instruction` + `output`, plus a boolean `label` (LLaMA-Factory's
`kto_tag` column is mapped onto `label`).

Internal shapes (every list is a list of role/content turns):
    paired:   {"prompt": [...], "chosen": [...], "rejected": [...], "messages": prompt + chosen, "meta": {...}}
    unpaired: {"prompt": [...], "completion": [...], "label": bool, "messages": prompt + completion, "meta": {...}}
`messages` is what SFT-shaped stages read (eval prompts and references, export parity prompts, stats).
"""

from __future__ import annotations

from tunesmith.errors import DataError

PAIRED = "preference"
UNPAIRED = "unpaired_preference"
PREFERENCE_FORMATS = (PAIRED, UNPAIRED)
PAIRED_METHODS = ("dpo", "orpo", "simpo")
UNPAIRED_METHODS = ("kto",)
PREFERENCE_METHODS = (*PAIRED_METHODS, *UNPAIRED_METHODS)
CONVERSATION_KEYS = ("conversations", "messages")
CONSUMED = ("chosen", "rejected", "prompt", "completion", "messages", "conversations")  # not repeated in meta


def preference_candidate(row: dict) -> tuple[str, str] | None:
    """(format, reason) when a row is preference-shaped; such rows fit no SFT format."""
    if "chosen" in row and "rejected" in row:
        return PAIRED, "keys 'chosen' and 'rejected'"
    if "label" in row and (
        "completion" in row or "output" in row or any(isinstance(row.get(k), list) for k in CONVERSATION_KEYS)
    ):
        return UNPAIRED, "a conversation or completion with a 'label'"
    return None


def fitting_methods(fmt: str) -> tuple[str, ...]:
    """The training methods that take rows of this format."""
    if fmt == PAIRED:
        return PAIRED_METHODS + UNPAIRED_METHODS  # KTO takes pairs too: each becomes a desirable and an undesirable row
    if fmt == UNPAIRED:
        return UNPAIRED_METHODS
    return ("sft", "grpo")


def describe(fmt: str) -> str:
    """The rows' shape and the methods that train on it, for `data check`'s summary."""
    shape = "preference pairs (chosen/rejected)" if fmt == PAIRED else "unpaired preference rows (boolean label)"
    return f"{shape}, for method {', '.join(fitting_methods(fmt))}"


def method_problem(method: str, fmt: str) -> str | None:
    """Why rows of `fmt` cannot train `method`, naming the methods that fit; None when they fit."""
    if fmt not in (*PREFERENCE_FORMATS, "unknown") and method in PREFERENCE_METHODS:
        return f"method '{method}' trains on preference data (chosen/rejected pairs, or rows with a boolean label for kto), but the rows are {fmt}"
    if fmt in PREFERENCE_FORMATS and method not in fitting_methods(fmt):
        shape = (
            "preference pairs (chosen/rejected)"
            if fmt == PAIRED
            else "unpaired preference rows (a completion with a boolean label)"
        )
        return f"the rows are {shape}, which method '{method}' would not train on: set method: {' or '.join(fitting_methods(fmt))}"
    return None


def to_messages(value, spec, role: str = "assistant") -> list[dict]:
    """A string, one turn or a list of turns (role/content, or ShareGPT from/value) -> role/content turns."""
    from tunesmith.data.formats import SHAREGPT_TAGS, _messages, _sharegpt

    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    turns = [value] if isinstance(value, dict) else value
    if not isinstance(turns, list):
        raise DataError(f"expected a string or a list of turns, got {_json_type(value)}")
    role_tag = {**SHAREGPT_TAGS, **spec.tags}["role_tag"]
    if turns and isinstance(turns[0], dict) and role_tag in turns[0]:  # ShareGPT, or OpenAI roles through its tags
        return _sharegpt({"conversations": turns}, spec)["messages"]
    return _messages({"messages": turns}, spec)["messages"]


def split_prompt(messages: list[dict]) -> tuple[list[dict], list[dict]]:
    """(prompt, answer): the answer is the trailing run of assistant turns."""
    cut = len(messages)
    while cut > 0 and messages[cut - 1].get("role") == "assistant":
        cut -= 1
    return messages[:cut], messages[cut:]


def _system(row: dict) -> list[dict]:
    system = row.get("system")
    return [{"role": "system", "content": system}] if isinstance(system, str) and system else []


def _explicit_prompt(row: dict, spec) -> list[dict]:
    """The prompt a row states outright: a conversation, a `prompt`, or alpaca's instruction + input."""
    for key in CONVERSATION_KEYS:
        if isinstance(row.get(key), list):
            return _system(row) + to_messages(row[key], spec, "user")
    if "prompt" in row:
        return _system(row) + to_messages(row["prompt"], spec, "user")
    if "instruction" in row:
        extra = row.get("input")
        user = f"{row['instruction']}\n{extra}" if isinstance(extra, str) and extra.strip() else row["instruction"]
        return _system(row) + [{"role": "user", "content": user}]
    return _system(row)


def paired_parts(row: dict, spec) -> dict:
    """{"prompt", "chosen", "rejected", "stated_prompt", "chosen_prompt", "rejected_prompt"} of a paired row.

    chosen_prompt / rejected_prompt are the turns before the answer inside chosen / rejected (an implicit
    prompt); the checks compare them, conversion uses them when the row states no prompt.
    """
    chosen_prompt, chosen = split_prompt(to_messages(row["chosen"], spec))
    rejected_prompt, rejected = split_prompt(to_messages(row["rejected"], spec))
    stated = _explicit_prompt(row, spec)
    prompt = chosen_prompt if chosen_prompt else stated
    if chosen_prompt and _system(row) and not any(m["role"] == "system" for m in chosen_prompt):
        prompt = _system(row) + chosen_prompt
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "stated_prompt": stated,
        "chosen_prompt": chosen_prompt,
        "rejected_prompt": rejected_prompt,
    }


def convert_paired(row: dict, spec) -> dict:
    """A paired row -> {"prompt", "chosen", "rejected", "messages"}."""
    parts = paired_parts(row, spec)
    return {
        "prompt": parts["prompt"],
        "chosen": parts["chosen"],
        "rejected": parts["rejected"],
        "messages": parts["prompt"] + parts["chosen"],
    }


def convert_unpaired(row: dict, spec) -> dict:
    """An unpaired row -> {"prompt", "completion", "label", "messages"}; the label must be a boolean."""
    label = row.get("label")
    if not isinstance(label, bool):
        raise DataError(f"label is {_json_type(label)}, expected true or false")
    if "completion" in row:
        prompt, completion = _explicit_prompt(row, spec), to_messages(row["completion"], spec)
        if not prompt:  # a completion that is a whole conversation (argilla's kto-mix keeps the prompt inside it)
            prompt, completion = split_prompt(completion)
    elif "output" in row:
        prompt, completion = _explicit_prompt(row, spec), to_messages(row["output"], spec)
    else:
        prompt, completion = split_prompt(_explicit_prompt(row, spec))
    return {"prompt": prompt, "completion": completion, "label": label, "messages": prompt + completion}


def add_system_prompt(example: dict, text: str) -> dict:
    """Put a system turn first in the prompt (and messages) when the example has none."""
    if any(m.get("role") == "system" for m in example["prompt"]):
        return example
    system = {"role": "system", "content": text}
    example["prompt"] = [system, *example["prompt"]]
    example["messages"] = [system, *example["messages"]]
    return example


def row_problems(row: dict, fmt: str, spec) -> list[tuple[str, str]]:
    """(kind, message) for every problem of one preference row (already renamed to the expected columns)."""
    if fmt == UNPAIRED:
        return _unpaired_problems(row, spec)
    missing = [k for k in ("chosen", "rejected") if k not in row or row[k] is None]
    if missing:
        return [
            ("missing-answer", f"{name} is missing (null or no key): a pair needs both answers") for name in missing
        ]
    try:
        parts = paired_parts(row, spec)
    except DataError as exc:
        return [("invalid-row", exc.message)]
    problems = _answer_problems("chosen", parts["chosen"]) + _answer_problems("rejected", parts["rejected"])
    problems += _prompt_problems(parts, row)
    if parts["chosen"] and parts["chosen"] == parts["rejected"]:
        problems.append(("identical-pair", "chosen and rejected are identical: the pair teaches nothing"))
    return problems


def _answer_problems(name: str, answer: list[dict]) -> list[tuple[str, str]]:
    if not answer:
        return [("empty-answer", f"{name} is empty: no assistant answer after the prompt")]
    problems = []
    for turn in answer:
        content = turn.get("content")
        if not isinstance(content, str):
            problems.append(("non-string-content", f"{name}: content is {_json_type(content)}, expected a string"))
        elif not content.strip():
            problems.append(("empty-answer", f"{name} is empty"))
    return problems


def _prompt_problems(parts: dict, row: dict) -> list[tuple[str, str]]:
    from tunesmith.data.check import message_problems

    chosen_prompt, rejected_prompt = parts["chosen_prompt"], parts["rejected_prompt"]
    if chosen_prompt != rejected_prompt:
        turn = next(
            (i for i, (a, b) in enumerate(zip(chosen_prompt, rejected_prompt), 1) if a != b),
            min(len(chosen_prompt), len(rejected_prompt)) + 1,
        )
        return [
            (
                "prompt-mismatch",
                f"chosen and rejected have different prompts (turn {turn} differs): both must answer the same prompt",
            )
        ]
    stated = [m for m in parts["stated_prompt"] if m["role"] != "system"]
    inner = [m for m in chosen_prompt if m["role"] != "system"]
    if stated and inner and stated != inner and stated != inner[-1:]:
        return [("prompt-mismatch", "the prompt column differs from the prompt inside chosen/rejected")]
    if not parts["prompt"]:
        return [
            (
                "no-prompt",
                "no prompt: give 'prompt', 'conversations' or 'instruction', or whole conversations in chosen/rejected",
            )
        ]
    problems = [(k, f"prompt {m}") for k, m in message_problems(parts["prompt"]) if k not in ("no-assistant",)]
    if parts["prompt"][-1]["role"] not in ("user", "tool"):
        problems.append(("turn-order", "the prompt does not end with a user turn"))
    return problems


def _unpaired_problems(row: dict, spec) -> list[tuple[str, str]]:
    if "label" not in row:
        return [
            (
                "missing-key",
                "missing key 'label' (format unpaired_preference): true for a desirable answer, false for an undesirable one",
            )
        ]
    try:
        example = convert_unpaired(row, spec)
    except DataError as exc:
        kind = "non-boolean-label" if exc.message.startswith("label is") else "invalid-row"
        return [(kind, exc.message)]
    problems = _answer_problems("completion", example["completion"])
    if not example["prompt"]:
        problems.append(("no-prompt", "no prompt before the completion"))
    return problems


def label_counts_problem(counts: dict[bool, int]) -> str | None:
    """The KTO set-level problem: every row carries the same label."""
    if not counts or (counts.get(True) and counts.get(False)):
        return None
    only = "true" if counts.get(True) else "false"
    other = "false (undesirable)" if only == "true" else "true (desirable)"
    return f"every labelled row ({sum(counts.values())}) has label {only}: KTO needs both classes, add rows labelled {other}"


def _json_type(value) -> str:
    from tunesmith.data.check import _json_type as json_type

    kind = json_type(value)
    return f'"{value}" (a string)' if isinstance(value, str) else kind
