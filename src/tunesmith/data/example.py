"""The internal example row every stage shares: a conversation or a plain text, plus the source row's columns.

Every input format becomes this shape (data/formats.py) before anything is tokenized; the processed splits a
run saves (runs/<name>/data/*.jsonl) hold exactly these rows, and training, eval and the report read them back.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Message(TypedDict, total=False):
    """One turn: role (system, user, assistant, tool) and its text; tool calls as the chat template expects."""

    role: str
    content: str
    tool_calls: list[dict[str, Any]]
    name: str
    tool_call_id: str
    reasoning_content: str
    thinking: str
    weight: float


class Example(TypedDict, total=False):
    """A conversation (`messages`) or a plain text (`text`); `meta` keeps the source row's other columns
    (reference answers, labels, GRPO reward columns)."""

    messages: list[Message]
    text: str
    tools: list[
        dict[str, Any]
    ]  # function schemas offered to the model (OpenAI/HF shape), rendered by the chat template
    meta: dict[str, Any]


def is_conversation(example: Example) -> bool:
    """Whether the example is a conversation (else it is plain text)."""
    return bool(example.get("messages"))


def example_meta(example: Example) -> dict[str, Any]:
    """The source row's other columns (an empty dict when there are none)."""
    return example.get("meta") or {}
