"""Internal-shape examples -> GRPO rows: {"prompt": [messages up to the answer], <columns for the rewards>}.

A conversation row loses its last assistant turn (that turn becomes the reference when the row has no
reference column); a row with only columns (GSM8K's {question, answer}) gets its prompt column as the user
turn, after the config's system prompt. Prompts stay conversational, so TRL renders them with the run's chat
template, exactly as SFT does.
"""

from __future__ import annotations

from tunesmith.config.schema import Config
from tunesmith.data.example import Example, example_meta
from tunesmith.data.tokenize import split_trailing_answer
from tunesmith.errors import DataError

# Column names TRL reserves in a GRPO dataset; a row's own columns of these names are not passed on.
RESERVED = ("prompt", "completion", "completion_ids")


def grpo_row(example: Example, config: Config) -> dict:
    """One GRPO row: the prompt conversation plus the row's columns (meta) for the rewards."""
    meta = dict(example_meta(example))
    messages = example.get("messages") or []
    if messages:
        prompt, answer = split_trailing_answer(messages)
    elif config.grpo.prompt_column in meta:
        prompt, answer = _prompt_from_column(meta[config.grpo.prompt_column], config), None
    else:
        raise DataError(
            f"a GRPO row has no conversation and no '{config.grpo.prompt_column}' column (columns: {', '.join(meta) or 'none'})",
            hint="set grpo.prompt_column to the column that holds the question",
        )
    columns = {k: v for k, v in meta.items() if k not in RESERVED}
    if config.grpo.reference_column not in columns and answer is not None:
        columns[config.grpo.reference_column] = answer
    return {"prompt": prompt, **columns}


def grpo_rows(examples: list[Example], config: Config) -> list[dict]:
    """GRPO rows for a list of examples; rows without a user turn are an error with their index."""
    rows = []
    for i, example in enumerate(examples):
        row = grpo_row(example, config)
        if not any(m["role"] == "user" for m in row["prompt"]):
            raise DataError(f"GRPO row {i}: the prompt has no user turn", hint="each row needs a question to answer")
        rows.append(row)
    return rows


def reward_columns(rows: list[dict]) -> dict[str, list]:
    """Column-wise view of rows (what a reward receives as **columns), without the prompt."""
    keys = [k for k in rows[0] if k != "prompt"] if rows else []
    return {k: [row.get(k) for row in rows] for k in keys}


def _prompt_from_column(question, config: Config) -> list[dict]:
    system = config.data.system_prompt
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": str(question)}]
