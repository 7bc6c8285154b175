"""Built-in GRPO rewards: pure functions `(completions, **columns) -> list[float]`, options as keyword arguments.

Each built-in takes its options keyword-only and receives the dataset columns (one list per column, aligned
with `completions`) in `**columns`. The numeric and JSON rewards extract answers with the same code as the
eval metrics (tunesmith.scoring.extract), so a reward of 1.0 means the eval would count the answer right.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tunesmith.errors import ConfigError
from tunesmith.scoring.extract import extract_json, extract_number, numbers_equal

# Named patterns for the `format` reward; a completion matches when the whole (stripped) text fits.
FORMAT_PATTERNS = {
    "reasoning_answer": r"<reasoning>.+?</reasoning>\s*<answer>.+?</answer>",
    "think_answer": r"<think>.+?</think>\s*<answer>.+?</answer>",
    "answer": r"<answer>.+?</answer>",
}


def format_reward(
    completions: list[str], *, pattern: str = "reasoning_answer", full: bool = True, **columns
) -> list[float]:
    """1.0 when the completion fits the pattern (a name in FORMAT_PATTERNS or a regex), else 0.0.

    full=True: the whole completion must match; full=False: the pattern may occur anywhere.
    """
    regex = _compile(FORMAT_PATTERNS.get(pattern, pattern))
    check = regex.fullmatch if full else regex.search
    return [1.0 if check(text.strip()) else 0.0 for text in completions]


def numeric_match(
    completions: list[str], *, reference_column: str = "answer", tolerance: float = 1e-6, **columns
) -> list[float]:
    """1.0 when the completion's final number equals the reference's (GSM8K '####' aware), else 0.0."""
    references = _column(columns, reference_column, "numeric_match")
    scores = []
    for text, reference in zip(completions, references):
        expected = reference if isinstance(reference, (int, float)) else extract_number(str(reference))
        scores.append(1.0 if numbers_equal(extract_number(text), expected, tolerance) else 0.0)
    return scores


def json_valid(completions: list[str], *, strict: bool = False, **columns) -> list[float]:
    """1.0 when the completion holds a JSON object/array (strict: is nothing but JSON), else 0.0."""
    if strict:
        return [1.0 if _loads(text.strip()) is not _MISSING else 0.0 for text in completions]
    return [0.0 if extract_json(text) is None else 1.0 for text in completions]


def json_match(
    completions: list[str], *, reference_column: str = "answer", fields: list[str] | None = None, **columns
) -> list[float]:
    """Share of the reference object's fields (or `fields`) the completion's JSON gets equal; 1/0 for non-objects."""
    references = _column(columns, reference_column, "json_match")
    scores = []
    for text, reference in zip(completions, references):
        expected = _as_json(reference)
        got = extract_json(text)
        if isinstance(expected, dict):
            keys = fields or list(expected)
            hits = sum(1 for k in keys if isinstance(got, dict) and k in got and got[k] == expected.get(k))
            scores.append(hits / len(keys) if keys else float(got == expected))
        else:
            scores.append(1.0 if got is not None and got == expected else 0.0)
    return scores


def length_reward(
    completions: list[str], *, min: int = 0, max: int | None = None, unit: str = "chars", **columns
) -> list[float]:  # noqa: A002
    """1.0 inside [min, max]; outside, the ratio of the nearer bound to the length (smooth, so it can teach)."""
    if unit not in ("chars", "words"):
        raise ConfigError(f"length reward: unit '{unit}' is not one of chars, words")
    scores = []
    for text in completions:
        size = len(text) if unit == "chars" else len(text.split())
        if size < min:
            scores.append(size / min)
        elif max is not None and size > max:
            scores.append(max / size)
        else:
            scores.append(1.0)
    return scores


def contains(
    completions: list[str], *, text: str | list[str] = "", case_sensitive: bool = False, **columns
) -> list[float]:
    """Share of the given strings that occur in the completion."""
    needles = [text] if isinstance(text, str) else list(text)
    if not any(needles):
        raise ConfigError("contains reward: set options.text to a string or a list of strings")
    if not case_sensitive:
        needles = [n.lower() for n in needles]
    scores = []
    for completion in completions:
        hay = completion if case_sensitive else completion.lower()
        scores.append(sum(1 for n in needles if n in hay) / len(needles))
    return scores


# Rewards with partial credit and penalties as in Unsloth's GRPO notebooks (match_format_exactly,
# match_format_approximately, check_answer, check_numbers); every score is an option. The tags default to the
# recipe's <reasoning>...</reasoning><answer>...</answer>.
TAGS = {
    "reasoning_start": "<reasoning>",
    "reasoning_end": "</reasoning>",
    "solution_start": "<answer>",
    "solution_end": "</answer>",
}


def _format_regex(reasoning_start: str, reasoning_end: str, solution_start: str, solution_end: str) -> re.Pattern:
    """Reasoning block, then the solution block (captured), then only whitespace to the end."""
    rs, re_, ss, se = (re.escape(t) for t in (reasoning_start, reasoning_end, solution_start, solution_end))
    return re.compile(rf"^\s*{rs}.+?{re_}.*?{ss}(.+?){se}\s*$", re.S)


def format_exact(
    completions: list[str],
    *,
    score: float = 3.0,
    reasoning_start: str = TAGS["reasoning_start"],
    reasoning_end: str = TAGS["reasoning_end"],
    solution_start: str = TAGS["solution_start"],
    solution_end: str = TAGS["solution_end"],
    **columns,
) -> list[float]:
    """`score` when the completion is exactly reasoning block + solution block, else 0."""
    regex = _format_regex(reasoning_start, reasoning_end, solution_start, solution_end)
    return [score if regex.search(text) else 0.0 for text in completions]


def format_approx(
    completions: list[str],
    *,
    credit: float = 0.5,
    penalty: float = -1.0,
    reasoning_start: str = TAGS["reasoning_start"],
    reasoning_end: str = TAGS["reasoning_end"],
    solution_start: str = TAGS["solution_start"],
    solution_end: str = TAGS["solution_end"],
    **columns,
) -> list[float]:
    """Per tag: `credit` when it appears exactly once, `penalty` when it is missing or repeated; summed."""
    tags = [t for t in (reasoning_start, reasoning_end, solution_start, solution_end) if t]
    return [sum(credit if text.count(tag) == 1 else penalty for tag in tags) for text in completions]


def answer_check(
    completions: list[str],
    *,
    reference_column: str = "answer",
    exact: float = 3.0,
    stripped: float = 1.5,
    within_10: float = 1.0,
    within_20: float = 0.5,
    wrong: float = -1.5,
    missing: float = 0.0,
    reasoning_start: str = TAGS["reasoning_start"],
    reasoning_end: str = TAGS["reasoning_end"],
    solution_start: str = TAGS["solution_start"],
    solution_end: str = TAGS["solution_end"],
    **columns,
) -> list[float]:
    """Graded check of the solution block: exact, equal after stripping, ratio within 10% / 20%, else `wrong`.

    `missing` when the completion is not in the format (no solution block to read).
    """
    regex = _format_regex(reasoning_start, reasoning_end, solution_start, solution_end)
    scores = []
    for text, reference in zip(completions, _column(columns, reference_column, "answer_check")):
        found = regex.search(text)
        scores.append(
            missing
            if found is None
            else _graded(found.group(1), _final_answer(reference), (exact, stripped, within_10, within_20, wrong))
        )
    return scores


def number_match(
    completions: list[str],
    *,
    reference_column: str = "answer",
    credit: float = 1.5,
    penalty: float = -0.5,
    missing: float = 0.0,
    solution_start: str = TAGS["solution_start"],
    **columns,
) -> list[float]:
    """The first number after `solution_start`: `credit` when it equals the reference number, else `penalty`."""
    regex = re.compile(rf"{re.escape(solution_start)}.*?(-?[\d.,]+)", re.S)
    scores = []
    for text, reference in zip(completions, _column(columns, reference_column, "number_match")):
        found = regex.search(text)
        guess, expected = (_to_float(found.group(1)) if found else None), _to_float(_final_answer(reference))
        if found is None or guess is None or expected is None:
            scores.append(missing)
        else:
            scores.append(credit if guess == expected else penalty)
    return scores


def _final_answer(reference) -> str:
    """GSM8K's answer after '####', else the reference as text."""
    text = str(reference)
    return text.split("####")[-1].strip() if "####" in text else text.strip()


def _graded(guess: str, truth: str, values: tuple[float, float, float, float, float]) -> float:
    exact, stripped, within_10, within_20, wrong = values
    if guess == truth:
        return exact
    if guess.strip() == truth.strip():
        return stripped
    g, t = _to_float(guess), _to_float(truth)
    if g is None or not t:
        return wrong
    ratio = g / t
    return within_10 if 0.9 <= ratio <= 1.1 else within_20 if 0.8 <= ratio <= 1.2 else wrong


def _to_float(text: str) -> float | None:
    try:
        return float(text.strip().replace(",", ""))
    except ValueError:
        return None


BUILTINS = {
    "format_exact": format_exact,
    "format_approx": format_approx,
    "answer_check": answer_check,
    "number_match": number_match,
    "format": format_reward,
    "numeric_match": numeric_match,
    "json_valid": json_valid,
    "json_match": json_match,
    "length": length_reward,
    "contains": contains,
}

# Built-ins that compare with a reference column (the builder fills it from grpo.reference_column).
USES_REFERENCE = ("numeric_match", "json_match", "answer_check", "number_match")

_MISSING = object()


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern, re.S)
    except re.error as exc:
        raise ConfigError(
            f"format reward: '{pattern}' is not a valid regex ({exc})",
            hint=f"use a regex or a named pattern: {', '.join(FORMAT_PATTERNS)}",
        ) from None


def _column(columns: dict[str, list], name: str, reward: str) -> list:
    if name not in columns:
        available = ", ".join(sorted(columns)) or "none"
        raise KeyError(f"{reward}: the data has no column '{name}' (columns: {available}); set grpo.reference_column")
    return columns[name]


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return _MISSING


def _as_json(value: Any) -> Any:
    """A reference JSON value: parsed from text when it is a string."""
    if isinstance(value, str):
        parsed = extract_json(value)
        return value if parsed is None else parsed
    return value
