"""Conversation -> token ids + loss mask, by rendering the chat template (no `{% generation %}` markers needed).

The rendered text is cut into segments at each assistant turn: the prompt before it (no loss), the assistant
content and its end-of-turn token (loss), then whatever the template adds after (no loss, e.g. ChatML's
newline). The segments are found by rendering prefixes of the conversation, so any template that renders
turns in order works, with or without generation markers.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.data.example import Example, is_conversation
from tunesmith.errors import DataError
from tunesmith.model.templates import END_OF_TURN

IGNORE_INDEX = -100


@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where no loss
    truncated: bool = False

    @property
    def num_loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def render(
    tokenizer, messages: list[dict], add_generation_prompt: bool = False, tools: list[dict] | None = None
) -> str:
    """The chat template's text; `tools` go through the template's own tool support (schemas in the prompt)."""
    extra = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **extra)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a piece of rendered text: special tokens in the text are kept, none are added."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def expects_bos(tokenizer) -> bool:
    """Whether every sequence starts with BOS for this model family, as llama.cpp and Ollama tokenize it.

    SentencePiece (Llama-2 style, '▁' pieces) tokenizers do, even when the HF tokenizer object does not add it
    itself (a LlamaTokenizer built from a bare tok512.model); byte-level BPE families (Qwen) do not.
    """
    cached = getattr(tokenizer, "_tunesmith_expects_bos", None)
    if cached is None:
        cached = tokenizer.bos_token_id is not None and (
            bool(getattr(tokenizer, "add_bos_token", False))
            or sum(1 for t in tokenizer.get_vocab() if t.startswith("\u2581")) > 10
        )
        try:
            tokenizer._tunesmith_expects_bos = cached
        except AttributeError:  # a tokenizer that refuses new attributes: recompute each time
            pass
    return cached


def with_bos(tokenizer, ids: list[int]) -> list[int]:
    """`ids` starting with BOS when the family expects it and neither the template nor the tokenizer put it there."""
    if expects_bos(tokenizer) and (not ids or ids[0] != tokenizer.bos_token_id):
        return [tokenizer.bos_token_id, *ids]
    return ids


def conversation_segments(
    tokenizer, messages: list[dict], loss_on: str = "assistant", tools: list[dict] | None = None
) -> list[tuple[str, bool]]:
    """(text, trained) pieces whose concatenation is the rendered conversation.

    Assistant turns (their text and their tool calls, as the template writes them) are trained; tool outputs
    sit in the prompt before the next assistant turn, so they never get loss (except loss_on: all).
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    assistant_turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    last = assistant_turns[-1] if assistant_turns else -1
    for i in assistant_turns:
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools)
        full = render(tokenizer, messages[: i + 1], tools=tools)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise DataError(
                "the chat template renders earlier turns differently once later turns are added, "
                "so the loss mask cannot be derived from it",
                hint="use model.chat_template: chatml (or another template that renders turns in order)",
            )
        trained = loss_on == "all" or (loss_on == "assistant") or (loss_on == "last_assistant" and i == last)
        segments.append((prompt[len(done) :], loss_on == "all"))
        head, answer, tail = _split_end_of_turn(tokenizer, full[len(prompt) :], messages[i]["content"])
        segments.append((head, loss_on == "all"))
        segments.append((answer, trained))
        segments.append((tail, loss_on == "all"))
        done = full
    rest = render(tokenizer, messages, tools=tools)[len(done) :] if messages else ""
    segments.append((rest, loss_on == "all"))
    return [(text, trained) for text, trained in segments if text]


def _split_end_of_turn(tokenizer, rendered_turn: str, content: str) -> tuple[str, str, str]:
    """Split an assistant turn into (template glue before the content, content + end-of-turn token, what follows).

    e.g. ChatML: ('', 'hi<|im_end|>', '\\n'); the Mistral template: (' ', 'hi</s>', '').
    """
    stripped = content.strip()
    start = rendered_turn.find(stripped) if stripped else -1
    if start == -1:
        start = 0
    end = start + len(stripped) if stripped else 0
    head, after = rendered_turn[:start], rendered_turn[end:]
    for token in end_of_turn_tokens(tokenizer):
        at = after.find(token)
        if at != -1 and not after[:at].strip():
            cut = end + at + len(token)
            return head, rendered_turn[start:cut], rendered_turn[cut:]
    # No special end-of-turn token: train up to the end of the template's text for this turn, minus spacing.
    cut = end + len(after.rstrip())
    return head, rendered_turn[start:cut], rendered_turn[cut:]


def end_of_turn_tokens(tokenizer) -> list[str]:
    names = list(END_OF_TURN)
    if tokenizer.eos_token:
        names.append(tokenizer.eos_token)
    return [n for n in dict.fromkeys(names) if n]


def tokenize_conversation(
    tokenizer,
    messages: list[dict],
    loss_on: str = "assistant",
    max_length: int | None = None,
    truncation: str = "right",
    tools: list[dict] | None = None,
) -> Tokenized:
    """Token ids and labels of one conversation; labels are IGNORE_INDEX where there is no loss.

    The whole rendered text is tokenized once; a token gets loss when its last character lies in a trained
    segment (so SentencePiece's '▁Hello', which carries the template's space, counts as answer).
    """
    segments = conversation_segments(tokenizer, messages, loss_on, tools)
    if not getattr(tokenizer, "is_fast", False):
        return _tokenize_segments(tokenizer, segments, max_length, truncation)
    text = "".join(seg for seg, _ in segments)
    trained_chars = bytearray(len(text))
    pos = 0
    for seg, trained in segments:
        if trained:
            trained_chars[pos : pos + len(seg)] = b"\x01" * len(seg)
        pos += len(seg)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = [
        tok if end > 0 and trained_chars[end - 1] else IGNORE_INDEX for tok, (_, end) in zip(ids, enc["offset_mapping"])
    ]
    return _truncate(*_bos_first(tokenizer, ids, labels), max_length, truncation)


def _bos_first(tokenizer, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
    """BOS in front (never trained) when the family expects it and the chat template did not write it."""
    full = with_bos(tokenizer, ids)
    return full, [IGNORE_INDEX] * (len(full) - len(ids)) + labels


def _tokenize_segments(
    tokenizer, segments: list[tuple[str, bool]], max_length: int | None, truncation: str = "right"
) -> Tokenized:
    """Fallback for tokenizers without offsets: each segment on its own."""
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in segments:
        piece = encode(tokenizer, text)
        ids.extend(piece)
        labels.extend(piece if trained else [IGNORE_INDEX] * len(piece))
    return _truncate(*_bos_first(tokenizer, ids, labels), max_length, truncation)


def tokenize_text(tokenizer, text: str, max_length: int | None = None, truncation: str = "right") -> Tokenized:
    """Plain text (pre-training style): every token gets loss; BOS/EOS added as the tokenizer defines them."""
    ids = with_bos(tokenizer, list(tokenizer(text, add_special_tokens=True)["input_ids"]))
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids.append(tokenizer.eos_token_id)
    return _truncate(ids, list(ids), max_length, truncation)


def tokenize_example(
    tokenizer, example: Example, loss_on: str = "assistant", max_length: int | None = None, truncation: str = "right"
) -> Tokenized:
    """An example in the internal shape: {'messages': [...]} or {'text': ...}."""
    if is_conversation(example):
        return tokenize_conversation(
            tokenizer, example["messages"], loss_on, max_length, truncation, example.get("tools")
        )
    return tokenize_text(tokenizer, example.get("text") or "", max_length, truncation)


def _truncate(ids: list[int], labels: list[int], max_length: int | None, truncation: str = "right") -> Tokenized:
    """Cut to max_length: keep the start (right), keep the end with the answer (left), or nothing (drop)."""
    if max_length is None or len(ids) <= max_length:
        return Tokenized(ids, labels)
    if truncation == "left":
        return Tokenized(ids[-max_length:], labels[-max_length:], truncated=True)
    if truncation == "drop":
        return Tokenized([], [], truncated=True)
    return Tokenized(ids[:max_length], labels[:max_length], truncated=True)


def split_trailing_answer(messages: list[dict]) -> tuple[list[dict], str | None]:
    """(the turns before a final assistant turn, that turn's content), or (all turns, None) without one."""
    if messages and messages[-1]["role"] == "assistant":
        return [dict(m) for m in messages[:-1]], messages[-1]["content"]
    return [dict(m) for m in messages], None


def prompt_ids(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
    """Ids of the prompt for generation: every turn before the answer, then the assistant header (BOS first
    when the family expects it, as in training); `tools` (the row's function schemas) rendered as in training."""
    text = render(tokenizer, messages, add_generation_prompt=True, tools=tools)
    return with_bos(tokenizer, encode(tokenizer, text))


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything that decides the ids: vocabulary/merges, special tokens and chat template."""
    import hashlib

    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(
        backend.to_str().encode() if backend is not None else repr(sorted(tokenizer.get_vocab().items())).encode()
    )
    digest.update(
        repr((tokenizer.chat_template, tokenizer.eos_token, tokenizer.bos_token, type(tokenizer).__name__)).encode()
    )
    return digest.hexdigest()[:16]


def examples_fingerprint(
    examples: list[Example], loss_on: str, max_length: int | None, truncation: str = "right"
) -> str:
    """A digest of the examples' contents (meta excluded) and the masking settings."""
    import hashlib
    import json

    digest = hashlib.sha256(
        repr((loss_on, max_length) if truncation == "right" else (loss_on, max_length, truncation)).encode()
    )
    for example in examples:
        body = example["messages"] if is_conversation(example) else example.get("text")
        body = [body, example["tools"]] if example.get("tools") else body
        digest.update(json.dumps(body, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


PARALLEL_FROM = 20_000  # examples; below this, worker start-up costs more than it saves


def tokenize_dataset(
    tokenizer,
    examples: list[Example],
    loss_on: str = "assistant",
    max_length: int | None = None,
    cache_dir=None,
    num_proc: int | None = None,
    truncation: str = "right",
):
    """Examples -> a `datasets.Dataset` with columns input_ids, labels, truncated (one row per example, same order).

    Runs `Dataset.map` batched, with `num_proc` workers (default: up to 4 from 20,000 examples). With
    `cache_dir`, the result is saved under a fingerprint of tokenizer + contents + settings, and a second
    call with the same inputs loads it instead of tokenizing again.
    """
    import json
    import os
    from pathlib import Path

    import datasets

    target = None
    if cache_dir is not None:
        key = f"{tokenizer_fingerprint(tokenizer)}-{examples_fingerprint(examples, loss_on, max_length, truncation)}"
        target = Path(cache_dir) / f"tokenized-{key}"
        if (target / "dataset_info.json").exists():
            return datasets.load_from_disk(str(target))
    # One JSON string per example keeps Arrow from having to unify heterogeneous turn and meta types.
    body = [{k: v for k, v in ex.items() if k != "meta"} for ex in examples]
    raw = datasets.Dataset.from_dict({"example": [json.dumps(b, ensure_ascii=False) for b in body]})
    if num_proc is None:
        num_proc = min(4, os.cpu_count() or 1) if len(examples) >= PARALLEL_FROM else None

    def encode_batch(batch: dict) -> dict:
        done = [tokenize_example(tokenizer, json.loads(s), loss_on, max_length, truncation) for s in batch["example"]]
        return {
            "input_ids": [t.input_ids for t in done],
            "labels": [t.labels for t in done],
            "truncated": [t.truncated for t in done],
        }

    dataset = raw.map(
        encode_batch, batched=True, batch_size=256, num_proc=num_proc, remove_columns=["example"], desc="tokenizing"
    )
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        dataset.save_to_disk(str(target))
    return dataset
