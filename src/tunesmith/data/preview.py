"""`data preview`: examples rendered through the chat template with the loss tokens marked, plus warnings."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunesmith.config.load import load_config
from tunesmith.data.clean import texts_of
from tunesmith.data.sources import looks_like_config
from tunesmith.data.splits import load_sources
from tunesmith.data.tokenize import IGNORE_INDEX, end_of_turn_tokens, render, tokenize_example
from tunesmith.errors import DataError
from tunesmith.model.load import tokenizer_for


@dataclass
class Preview:
    """One example as (text, trained) pieces in token order, and what looks wrong with it."""

    pieces: list[tuple[str, bool]]
    warnings: list[str] = field(default_factory=list)
    tokens: int = 0
    loss_tokens: int = 0
    part: str = ""  # preference examples: chosen / rejected, or desirable / undesirable (KTO)
    number: int = 0  # which example (1-based); the two parts of a pair share it


def end_of_turn_ids(tokenizer) -> set[int]:
    """Ids of the end-of-turn / EOS tokens this tokenizer knows."""
    vocab = tokenizer.get_vocab()
    return {vocab[t] for t in end_of_turn_tokens(tokenizer) if t in vocab}


def preview_example(tokenizer, example: dict, loss_on: str = "assistant", max_length: int | None = None) -> Preview:
    """Tokenize one example, group tokens by loss / no loss, and collect warnings."""
    full = tokenize_example(tokenizer, example, loss_on, None)
    tokenized = tokenize_example(tokenizer, example, loss_on, max_length)
    pieces: list[tuple[str, bool]] = []
    start = 0
    flags = [label != IGNORE_INDEX for label in tokenized.labels]
    for i in range(1, len(flags) + 1):
        if i == len(flags) or flags[i] != flags[start]:
            pieces.append((tokenizer.decode(tokenized.input_ids[start:i], skip_special_tokens=False), flags[start]))
            start = i
    preview = Preview(pieces, tokens=len(tokenized.input_ids), loss_tokens=tokenized.num_loss_tokens)
    preview.warnings = _warnings(tokenizer, example, tokenized, len(full.input_ids), max_length)
    return preview


def _warnings(tokenizer, example: dict, tokenized, full_length: int, max_length: int | None) -> list[str]:
    warnings = []
    messages = example.get("messages") or []
    if tokenized.truncated:
        warnings.append(
            f"truncated: {full_length} tokens, cut to max_length {max_length} (the end of the answer gets no loss)"
        )
    if not any(m.get("role") == "assistant" for m in messages):
        return warnings
    ends = end_of_turn_ids(tokenizer)
    trained = {label for label in tokenized.labels if label != IGNORE_INDEX}
    if not tokenized.truncated and not trained & ends:
        warnings.append("the end-of-turn / EOS token gets no loss: the model will not learn to stop")
    first = next(i for i, m in enumerate(messages) if m.get("role") == "assistant")
    tools = example.get("tools")
    if render(tokenizer, messages[:first], add_generation_prompt=True, tools=tools) == render(
        tokenizer, messages[:first], tools=tools
    ):
        warnings.append(
            "the chat template adds no assistant marker with add_generation_prompt: prompts at inference will not match training"
        )
    return warnings


def preview_examples(
    tokenizer, examples: list[dict], n: int = 3, loss_on: str = "assistant", max_length: int | None = None
) -> list[Preview]:
    """Previews of the first n examples; a preference pair gives two (its prompt with chosen, then with rejected)."""
    previews = []
    for number, example in enumerate(examples[:n], 1):
        for part, conversation in preference_views(example):
            # a preference method scores the answer after the prompt: the last assistant turn
            preview = preview_example(tokenizer, conversation, "last_assistant" if part else loss_on, max_length)
            preview.part, preview.number = part, number
            previews.append(preview)
    return previews


def preference_views(example: dict) -> list[tuple[str, dict]]:
    """(part, conversation) to render: prompt + chosen and prompt + rejected for pairs, the one row otherwise.

    The marked tokens of a preference example are those its method scores: the answer after the prompt.
    """
    if "rejected" in example:
        return [(name, {"messages": example["prompt"] + example[name]}) for name in ("chosen", "rejected")]
    if "label" in example:
        return [
            (
                "desirable" if example["label"] else "undesirable",
                {"messages": example["prompt"] + example["completion"]},
            )
        ]
    return [("", example)]


def as_brackets(preview: Preview) -> str:
    """Plain text with every run of loss tokens inside [brackets] (for pipes and logs)."""
    return "".join(f"[{text}]" if trained else text for text, trained in preview.pieces)


def as_rich(preview: Preview):
    """A rich Text with loss tokens in bold green on a dark background."""
    from rich.text import Text

    text = Text()
    for piece, trained in preview.pieces:
        text.append(piece, style="bold green on grey15" if trained else "dim")
    return text


def preview_target(
    target: str,
    n: int = 3,
    model: str | None = None,
    chat_template: str | None = None,
    loss_on: str | None = None,
    max_length: int | None = None,
    fmt: str = "auto",
    overrides: list[str] | None = None,
) -> list[Preview]:
    """`data preview` on a config file (its model and loss settings) or a data file (needs --model)."""
    from pathlib import Path

    path = Path(target)
    if not path.exists():
        raise DataError(f"{target}: no such file or folder")
    if looks_like_config(path):
        config = load_config(path, [*(overrides or []), *([f"model.name_or_path={model}"] if model else [])])
    elif model:
        config = load_config(
            data={"model": {"name_or_path": model}, "data": {"sources": [{"path": target, "format": fmt}]}}
        )
    else:
        raise DataError(f"{target}: previewing needs a tokenizer: pass --model (hub id, folder, .gguf or tiny:qwen2)")
    examples = [ex for item in load_sources(config) for ex in item.examples][:n]
    m = config.model
    tokenizer = tokenizer_for(m, texts=["\n".join(texts_of(e)) for e in examples], chat_template=chat_template)
    return preview_examples(
        tokenizer, examples, n, loss_on or config.data.loss_on, max_length or config.data.max_length
    )
