"""Held-out preference accuracy: does the model give the chosen answer a higher log-probability than the rejected one?

For each pair, the log-probability of an answer is the sum over its tokens (its end-of-turn token included)
given the prompt, as DPO scores it. Accuracy is the share of pairs where chosen > rejected; the margin is the
mean of log p(chosen) - log p(rejected). Unpaired (KTO) rows form pairs from a desirable and an undesirable
answer to the same prompt.
"""

from __future__ import annotations

import json

from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_example


def preference_pairs(examples: list[dict]) -> list[tuple[list[dict], list[dict], list[dict]]]:
    """(prompt, chosen, rejected) of every pair: paired rows as they are, unpaired rows matched by prompt."""
    pairs = [(ex["prompt"], ex["chosen"], ex["rejected"]) for ex in examples if "rejected" in ex]
    by_prompt: dict[str, dict[bool, list]] = {}
    for ex in examples:
        if "label" in ex and "completion" in ex:
            by_prompt.setdefault(json.dumps(ex["prompt"], sort_keys=True), {}).setdefault(ex["label"], []).append(ex)
    for group in by_prompt.values():
        for good, bad in zip(group.get(True, []), group.get(False, [])):
            pairs.append((good["prompt"], good["completion"], bad["completion"]))
    return pairs


def answer_logprobs(
    model, tokenizer, conversations: list[list[dict]], max_length: int | None, batch_size: int = 8
) -> list[float]:
    """Summed log-probability of the last assistant answer of each conversation given what precedes it."""
    import torch

    from tunesmith.eval.loss import _right_pad

    rows = [tokenize_example(tokenizer, {"messages": c}, "last_assistant", max_length) for c in conversations]
    device = next(model.parameters()).device
    model.eval()
    out: list[float] = []
    for start in range(0, len(rows), batch_size):
        input_ids, labels, attention = (
            t.to(device) for t in _right_pad(rows[start : start + batch_size], tokenizer.pad_token_id)
        )
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits[:, :-1].float()
        targets = labels[:, 1:]
        scored = targets != IGNORE_INDEX
        token_logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        out += (token_logps * scored).sum(dim=1).tolist()
    return out


def preference_scores(
    model, tokenizer, examples: list[dict], max_length: int | None = None, batch_size: int = 8
) -> dict[str, float]:
    """{"preference_accuracy", "preference_margin", "preference_pairs"}; empty when the examples hold no pairs."""
    pairs = preference_pairs(examples)
    if not pairs:
        return {}
    chosen = answer_logprobs(model, tokenizer, [p + c for p, c, _ in pairs], max_length, batch_size)
    rejected = answer_logprobs(model, tokenizer, [p + r for p, _, r in pairs], max_length, batch_size)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {
        "preference_accuracy": sum(m > 0 for m in margins) / len(margins),
        "preference_margin": sum(margins) / len(margins),
        "preference_pairs": float(len(margins)),
    }
