"""Cleaning of examples in the internal shape: whitespace, HTML, regex drops, a character class, length, dedup."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable, Iterable

from tunesmith.config.schema import CleanConfig
from tunesmith.data.example import Example
from tunesmith.errors import ConfigError

HTML_TAG = re.compile(r"<[^<>]+>")
SPACES = re.compile(r"[ \t\f\v]+")
BLANK_LINES = re.compile(r"\n{3,}")


# Preference examples: prompt + answers; `messages` there only repeats prompt + chosen (or completion).
PREFERENCE_PARTS = ("prompt", "chosen", "rejected", "completion")


def _conversations(example: Example) -> list[str]:
    """The keys of an example that hold turns: the preference parts when present, else messages."""
    parts = [k for k in PREFERENCE_PARTS if k in example]
    return parts or (["messages"] if "messages" in example else [])


def texts_of(example: Example) -> list[str]:
    """The string contents an example trains on (every turn's content, or the text); for a preference pair
    that is its prompt and chosen answer (`messages`), as the tiny tokenizer, preview and stats read it."""
    if "messages" in example:
        return [m["content"] for m in example["messages"] if isinstance(m.get("content"), str)]
    return [example.get("text") or ""]


def all_texts(example: Example) -> list[str]:
    """Every string content of an example, rejected answers included (what cleaning filters on)."""
    keys = _conversations(example)
    if keys:
        return [m["content"] for k in keys for m in example[k] if isinstance(m.get("content"), str)]
    return [example.get("text") or ""]


def content_key(example: Example) -> bytes:
    """A digest of what an example says (turns, label or text, not meta): equal digests are exact duplicates."""
    keys = _conversations(example)
    if keys == ["messages"]:
        body = example["messages"]
    elif keys:
        body = [example[k] for k in keys] + [example.get("label")]
    else:
        body = example.get("text")
    return hashlib.blake2b(json.dumps(body, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).digest()


def _text_fixer(clean: CleanConfig) -> Callable[[str], str] | None:
    steps: list[Callable[[str], str]] = []
    if clean.strip_html:
        steps.append(lambda s: html.unescape(HTML_TAG.sub("", s)))
    if clean.keep_chars:
        try:
            drop = re.compile(f"[^{clean.keep_chars}]")
        except re.error as exc:
            raise ConfigError(
                f"data.clean.keep_chars: '{clean.keep_chars}' is not a valid character class: {exc}"
            ) from None
        steps.append(lambda s: drop.sub("", s))
    if clean.normalize_whitespace:
        steps.append(
            lambda s: BLANK_LINES.sub(
                "\n\n", "\n".join(SPACES.sub(" ", line).strip() for line in s.split("\n"))
            ).strip()
        )
    if not steps:
        return None

    def fix(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return fix


def _apply(example: dict, fix: Callable[[str], str]) -> dict:
    keys = [k for k in ("messages", *PREFERENCE_PARTS) if k in example]
    if keys:
        return {**example, **{k: [_fix_turn(m, fix) for m in example[k]] for k in keys}}
    return {**example, "text": fix(example.get("text") or "")}


def _fix_turn(turn: dict, fix: Callable[[str], str]) -> dict:
    return {**turn, "content": fix(turn["content"])} if isinstance(turn.get("content"), str) else turn


def _drop_patterns(clean: CleanConfig) -> list[re.Pattern]:
    patterns = []
    for pattern in clean.drop_regex:
        try:
            patterns.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(f"data.clean.drop_regex: '{pattern}' is not a valid regex: {exc}") from None
    return patterns


def clean_examples(
    examples: Iterable[Example], clean: CleanConfig, seen: set[bytes] | None = None
) -> tuple[list[Example], dict[str, int]]:
    """Cleaned examples plus how many rows each rule dropped. `seen` shares dedup state across sources."""
    fix, patterns = _text_fixer(clean), _drop_patterns(clean)
    seen = set() if seen is None else seen
    kept: list[Example] = []
    dropped = {"regex": 0, "min_chars": 0, "max_chars": 0, "duplicate": 0}
    for example in examples:
        if fix is not None:
            example = _apply(example, fix)
        texts = all_texts(example)
        chars = sum(len(t) for t in texts)
        if patterns and any(p.search(t) for p in patterns for t in texts):
            dropped["regex"] += 1
        elif clean.min_chars is not None and chars < clean.min_chars:
            dropped["min_chars"] += 1
        elif clean.max_chars is not None and chars > clean.max_chars:
            dropped["max_chars"] += 1
        elif clean.dedup and (key := content_key(example)) in seen:
            dropped["duplicate"] += 1
        else:
            if clean.dedup:
                seen.add(key)
            kept.append(example)
    return kept, dropped
