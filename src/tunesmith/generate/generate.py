"""Batched generation with the run's chat template: left padding, KV cache, n samples per prompt.

Used by `tunesmith generate`, by evaluation (base and tuned on the same prompts with the same decoding)
and by the report. Temperature 0 means greedy decoding, which is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.data.tokenize import end_of_turn_tokens, prompt_ids, split_trailing_answer
from tunesmith.errors import DataError, TunesmithError
from tunesmith.model.device import pick_device
from tunesmith.model.from_run import load_base, load_tuned


@dataclass
class GenerationSettings:
    """Decoding settings; the same object is used for every model compared."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    num_samples: int = 1
    batch_size: int = 8
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def build_messages(prompt: str | list[dict], system: str | None = None) -> list[dict]:
    """A conversation to answer: a plain prompt becomes one user turn (after the system turn, if any)."""
    messages = [dict(m) for m in prompt] if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if system and not (messages and messages[0]["role"] == "system"):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def stop_token_ids(model, tokenizer) -> list[int]:
    """EOS ids of the model plus every end-of-turn token the tokenizer knows."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.extend(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[t] for t in end_of_turn_tokens(tokenizer) if t in vocab)
    return list(dict.fromkeys(ids))


def cut_at_stop(text: str, stop: list[str]) -> str:
    """The text up to the first stop string (the stop string itself removed)."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


def generation_kwargs(model, tokenizer, settings: GenerationSettings) -> dict:
    """Keyword arguments for `model.generate` that implement `settings` (shared by batch generation and chat)."""
    kwargs = dict(
        max_new_tokens=settings.max_new_tokens,
        do_sample=not settings.greedy,
        num_return_sequences=settings.num_samples,
        repetition_penalty=settings.repetition_penalty,
        eos_token_id=stop_token_ids(model, tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    if settings.greedy:
        # Override sampling defaults a model's generation_config may carry, so greedy stays greedy.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    if settings.stop:
        kwargs.update(stop_strings=list(settings.stop), tokenizer=tokenizer)
    return kwargs


def _left_pad(batch_ids: list[list[int]], pad_id: int):
    import torch

    width = max(len(ids) for ids in batch_ids)
    input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for row, ids in enumerate(batch_ids):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
    return input_ids, attention


def generate(
    model,
    tokenizer,
    conversations: list[list[dict]],
    settings: GenerationSettings | None = None,
    tools: list[list[dict] | None] | None = None,
) -> list[list[str]]:
    """For each conversation, `settings.num_samples` assistant replies (decoded, stop strings cut).

    `tools[i]`: the function schemas conversation i offers (its row's `tools`), rendered as training did.
    """
    import torch
    from transformers import set_seed

    settings = settings or GenerationSettings()
    if settings.seed is not None:
        set_seed(settings.seed)
    model.eval()
    device = next(model.parameters()).device
    kwargs = generation_kwargs(model, tokenizer, settings)
    results: list[list[str]] = []
    tools = tools or [None] * len(conversations)
    for start in range(0, len(conversations), settings.batch_size):
        end = start + settings.batch_size
        batch = [
            prompt_ids(tokenizer, conv, schemas) for conv, schemas in zip(conversations[start:end], tools[start:end])
        ]
        input_ids, attention = _left_pad(batch, tokenizer.pad_token_id)
        with torch.no_grad():
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
        texts = tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)
        texts = [cut_at_stop(t, settings.stop).strip() for t in texts]
        n = settings.num_samples
        results.extend(texts[i : i + n] for i in range(0, len(texts), n))
    return results


def load_for_generation(target: str | Path, base: bool = False, checkpoint: str | None = None):
    """(model, tokenizer) of a run directory (tuned, or its base) or a plain model, on the best device."""
    model, tokenizer = load_base(target) if base else load_tuned(target, checkpoint=checkpoint)
    model.to(pick_device("auto"))
    model.eval()
    return model, tokenizer


def read_prompts(path: str | Path) -> list[str | list[dict] | dict]:
    """Prompts from a .txt (one per line) or .jsonl file (a `prompt` string, `messages` or ShareGPT
    `conversations` per line); a row with a `tools` column becomes {"messages": [...], "tools": [...]}."""
    import json

    file = Path(path)
    if not file.is_file():
        raise TunesmithError(f"--prompts {file}: no such file")
    lines = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if file.suffix != ".jsonl":
        return lines
    prompts: list[str | list[dict] | dict] = []
    for number, line in enumerate(lines, 1):
        try:
            prompts.append(_row_prompt(json.loads(line)))
        except (DataError, ValueError) as exc:
            reason = exc.message if isinstance(exc, DataError) else f"not JSON ({exc})"
            raise TunesmithError(f"{file}:{number}: {reason}", hint="one JSON object per line") from None
    return prompts


def _row_prompt(row: dict) -> str | list[dict] | dict:
    """One prompts-file row: tool calls and schemas normalized as training normalizes them (data/formats.py)."""
    from tunesmith.data.formats import FormatSpec, to_internal, tools_of

    if "messages" in row or "conversations" in row:
        example = to_internal(row, FormatSpec("messages" if "messages" in row else "sharegpt"))
        # A trailing assistant turn is the reference answer, not part of the prompt.
        messages = split_trailing_answer(example["messages"])[0]
        return {"messages": messages, "tools": example["tools"]} if example.get("tools") else messages
    if "prompt" in row:
        tools = tools_of(row).get("tools")
        return (
            {"messages": [{"role": "user", "content": str(row["prompt"])}], "tools": tools}
            if tools
            else str(row["prompt"])
        )
    raise DataError("expected a 'prompt', 'messages' or 'conversations' key")


def read_tools(path: str | Path) -> list[dict]:
    """Function schemas from a JSON file (a list, as a dataset's `tools` column holds, or one schema)."""
    from tunesmith.data.formats import tools_of

    file = Path(path)
    if not file.is_file():
        raise TunesmithError(f"--tools {file}: no such file", hint="a JSON file with a list of function schemas")
    try:
        tools = tools_of({"tools": file.read_text(encoding="utf-8")}).get("tools")
    except DataError as exc:
        raise TunesmithError(f"--tools {file}: {exc.message}", hint="a JSON list of function schemas") from None
    if not tools:
        raise TunesmithError(f"--tools {file}: no function schemas in the file", hint="a JSON list of schemas")
    return tools


def prompt_parts(prompt: str | list[dict] | dict) -> tuple[str | list[dict], list[dict] | None]:
    """(the prompt as build_messages takes it, its own tool schemas or None)."""
    if isinstance(prompt, dict):
        return prompt["messages"], prompt.get("tools")
    return prompt, None


def generate_from(
    target: str | Path,
    prompts: list[str | list[dict] | dict],
    settings: GenerationSettings | None = None,
    system: str | None = None,
    checkpoint: str | None = None,
    tools: list[dict] | None = None,
) -> list[dict]:
    """Load a run or model and answer each prompt; rows of {"prompt", "messages", "samples"} (+ "tools").

    `system=None` uses the run's own system prompt (the one it trained with); "" means none. `tools`: function
    schemas offered to every prompt that has none of its own (read_prompts keeps a row's `tools`).
    """
    from tunesmith.model.from_run import run_system_prompt

    if not prompts:
        raise TunesmithError("no prompts given", hint="pass --prompt TEXT or --prompts FILE")
    if system is None:
        system = run_system_prompt(target)
    model, tokenizer = load_for_generation(target, checkpoint=checkpoint)
    parts = [prompt_parts(p) for p in prompts]
    conversations = [build_messages(p, system) for p, _ in parts]
    schemas = [own or tools for _, own in parts]
    samples = generate(model, tokenizer, conversations, settings, schemas)
    return [
        {"prompt": conv[-1]["content"], "messages": conv, **({"tools": t} if t else {}), "samples": outs}
        for conv, t, outs in zip(conversations, schemas, samples)
    ]
