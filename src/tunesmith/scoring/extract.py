"""Answer extraction shared by evaluation metrics and GRPO rewards: numbers and JSON objects in model text."""

from __future__ import annotations

import json
import re

# A minus sign counts only where it cannot be a dash between numbers or words ("10-20" ends in 20, not -20);
# U+2212 is the minus sign typeset text uses.
_NUMBER = r"(?:(?<![\w.])[-\u2212])?\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)"
_FINAL_PATTERNS = [
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"<answer>\s*(" + _NUMBER + r")\s*</answer>", re.I),
    re.compile(r"answer\s*(?:is|:)\s*\**\s*(" + _NUMBER + ")", re.I),
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}"),
]


def normalize_number(text: str) -> float | None:
    cleaned = text.replace(",", "").replace("$", "").replace("\u2212", "-").strip().rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def extract_number(text: str) -> float | None:
    """The final numeric answer: '#### 72', '<answer>72</answer>', 'the answer is 72', '\\boxed{72}', else the last number."""
    if not text:
        return None
    for pattern in _FINAL_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            return normalize_number(matches[-1])
    numbers = re.findall(_NUMBER, text)
    return normalize_number(numbers[-1]) if numbers else None


def numbers_equal(a: float | None, b: float | None, tolerance: float = 1e-6) -> bool:
    return a is not None and b is not None and abs(a - b) <= tolerance * max(1.0, abs(b))


def extract_json(text: str):
    """The first JSON object or array in the text (fenced ```json blocks allowed), or None."""
    if not text:
        return None
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text.strip())
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            pass
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch in "{["):
        try:
            return decoder.raw_decode(text[start:])[0]
        except json.JSONDecodeError:
            continue
    return None
