"""Padding-free preference batches give TRL's loss code the same per-token log-probs as its padded forward."""

from __future__ import annotations

import pytest
import torch

from tunesmith.train import preference_batching

TOLERANCE = 1e-5  # absolute, fp32: the two paths differ only in summation order


def _padded_batch(vocab: int):
    """Four sequences of different lengths (right padded, as TRL's collator pads); completion = the last tokens."""
    gen = torch.Generator().manual_seed(0)
    lengths, completions = [9, 5, 12, 7], [3, 2, 5, 4]
    width = max(lengths)
    input_ids = torch.zeros(len(lengths), width, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, (n, c) in enumerate(zip(lengths, completions)):
        input_ids[i, :n] = torch.randint(3, vocab, (n,), generator=gen)
        attention[i, :n] = 1
        labels[i, n - c : n] = input_ids[i, n - c : n]
    return input_ids, attention, labels


def _models(tiny_qwen2):
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    padded = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    flat = AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    for model in (padded, flat):
        add_fused_lm_head(model, outputs=outputs)

    class Holder:  # what use_flat_batches reads off a trainer
        model, ref_model = flat, None

    preference_batching.use_flat_batches(Holder)
    return padded, flat


def test_flat_log_probs_equal_padded(tiny_qwen2):
    padded, flat = _models(tiny_qwen2)
    input_ids, attention, labels = _padded_batch(padded.config.vocab_size)
    want = padded(input_ids=input_ids, attention_mask=attention, labels=labels, fused_lm_head=True, use_cache=False)
    got = flat(input_ids=input_ids, attention_mask=attention, labels=labels, fused_lm_head=True, use_cache=False)
    assert got.log_probs.shape == want.log_probs.shape
    scored = labels[:, 1:] != -100
    torch.testing.assert_close(got.log_probs[scored], want.log_probs[scored], atol=TOLERANCE, rtol=0)
    assert (got.log_probs[~scored] == 0).all()
    torch.testing.assert_close(got.entropy[scored], want.entropy[scored], atol=TOLERANCE, rtol=0)
    assert torch.equal(got.is_top1[scored], want.is_top1[scored].bool())
    # gradients flow into the model through the flattened path
    got.log_probs.sum().backward()
    assert flat.get_input_embeddings().weight.grad.abs().sum() > 0


def test_attention_leaking_across_sequences_is_caught(tiny_qwen2, monkeypatch):
    """Planted bug: flatten without restarting positions or giving boundaries, so sequences attend to each other."""
    padded, flat = _models(tiny_qwen2)
    real = preference_batching.flatten

    def leaky(input_ids, attention_mask, labels):
        ids, positions, bounds, flat_labels = real(input_ids, attention_mask, labels)
        whole = torch.tensor([0, ids.shape[1]], dtype=torch.int32)
        return ids, torch.arange(ids.shape[1]).unsqueeze(0), whole, flat_labels

    monkeypatch.setattr(preference_batching, "flatten", leaky)
    input_ids, attention, labels = _padded_batch(padded.config.vocab_size)
    want = padded(input_ids=input_ids, attention_mask=attention, labels=labels, fused_lm_head=True, use_cache=False)
    got = flat(input_ids=input_ids, attention_mask=attention, labels=labels, fused_lm_head=True, use_cache=False)
    scored = labels[:, 1:] != -100
    with pytest.raises(AssertionError):
        torch.testing.assert_close(got.log_probs[scored], want.log_probs[scored], atol=TOLERANCE, rtol=0)
