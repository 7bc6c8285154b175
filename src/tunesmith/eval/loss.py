"""Loss and perplexity on the answer tokens (the same loss mask training used)."""

from __future__ import annotations

import math

from tunesmith.data.example import Example
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_example


def _right_pad(rows, pad_id: int):
    import torch

    width = max(len(r.input_ids) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        input_ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(row.labels)
        attention[i, :n] = 1
    return input_ids, labels, attention


def answer_loss(
    model,
    tokenizer,
    examples: list[Example],
    loss_on: str = "assistant",
    max_length: int | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """Token-weighted mean cross-entropy over loss tokens, its perplexity, and the number of tokens scored."""
    import torch
    import torch.nn.functional as F

    rows = [tokenize_example(tokenizer, ex, loss_on, max_length) for ex in examples]
    rows = [r for r in rows if r.num_loss_tokens > 0]
    if not rows:
        return {}
    device = next(model.parameters()).device
    total, count = 0.0, 0
    model.eval()
    for start in range(0, len(rows), batch_size):
        input_ids, labels, attention = (
            t.to(device) for t in _right_pad(rows[start : start + batch_size], tokenizer.pad_token_id)
        )
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits.float()
        # Token t predicts token t+1; summing (not averaging per batch) weights every answer token equally.
        shifted = labels[:, 1:]
        total += F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            shifted.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        ).item()
        count += int((shifted != IGNORE_INDEX).sum())
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "loss_tokens": float(count)}
