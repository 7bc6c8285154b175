"""model/fused_norm_rope.py: the fused RMSNorm and rotary give transformers' outputs and gradients, only where
they were checked, and are put back after."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.models.llama import modeling_llama

from tunesmith.model import fused_norm_rope
from tunesmith.model.fused_norm_rope import RMSNormFunction, fused_norm_and_rope
from tunesmith.model.tiny import build_tiny_model

TOLERANCE = 1e-5  # absolute, fp32; measured differences are below 5e-7 (logits) and 2e-7 (gradients)


def tiny(family: str, tmp_path):
    path = build_tiny_model(family, tmp_path / family, ["how do i reset my password"] * 20, vocab_size=300,
                            layers=2, hidden=64, heads=4, seed=0)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(path)
    torch.manual_seed(0)
    for p in model.parameters():  # away from the init (norm weights of exactly 1 would hide a missing weight)
        p.data.add_(torch.randn_like(p) * 0.05)
    return model


def logits_and_grads(model):
    model.zero_grad()
    ids = torch.arange(34).remainder(200).view(2, 17)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def largest_difference(a, b) -> float:
    (logits_a, grads_a), (logits_b, grads_b) = a, b
    return max(
        [(logits_a - logits_b).abs().max().item()] + [(grads_a[n] - grads_b[n]).abs().max().item() for n in grads_a]
    )


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_full_fine_tune_outputs_and_gradients_equal_transformers(family, tmp_path):
    model = tiny(family, tmp_path)
    reference = logits_and_grads(model)
    with fused_norm_and_rope(model) as swapped:
        fused = logits_and_grads(model)
    assert any(name.endswith("RMSNorm.forward") for name in swapped)
    assert any(name.endswith("apply_rotary_pos_emb") for name in swapped)
    assert largest_difference(reference, fused) <= TOLERANCE  # norm weights are trained here: their grads too


def test_a_planted_backward_error_is_caught(tmp_path, monkeypatch):
    """The check above fails on a norm backward that drops the variance term (a plausible slip)."""
    model = tiny("llama", tmp_path)
    reference = logits_and_grads(model)

    def backward_without_variance_term(ctx, grad):
        x, rstd, weight = ctx.saved_tensors
        return grad * weight * rstd, (grad * x * rstd).reshape(-1, x.shape[-1]).sum(0), None

    monkeypatch.setattr(RMSNormFunction, "backward", staticmethod(backward_without_variance_term))
    with fused_norm_and_rope(model):
        wrong = logits_and_grads(model)
    assert largest_difference(reference, wrong) > 100 * TOLERANCE


def test_a_rotary_with_the_halves_swapped_is_caught(tmp_path, monkeypatch):
    model = tiny("llama", tmp_path)
    reference = logits_and_grads(model)
    monkeypatch.setattr(fused_norm_rope, "_rope_agrees", lambda original: True)  # skip the install check
    real = fused_norm_rope._rotate
    monkeypatch.setattr(fused_norm_rope, "_rotate", lambda x, cos, sin, sign: real(x, cos, sin, -sign))
    with fused_norm_and_rope(model):
        wrong = logits_and_grads(model)
    assert largest_difference(reference, wrong) > 100 * TOLERANCE


def test_gemma_norm_keeps_its_own_formula(tmp_path):
    """Gemma scales by (1 + weight): the install check refuses the fused norm, the model's output is unchanged."""
    model = tiny("gemma", tmp_path)
    reference = logits_and_grads(model)
    with fused_norm_and_rope(model) as swapped:
        assert not any("RMSNorm" in name for name in swapped)
        assert largest_difference(reference, logits_and_grads(model)) <= TOLERANCE


def test_originals_are_back_after_the_block_even_on_error(tmp_path):
    model = tiny("llama", tmp_path)
    norm, rope = modeling_llama.LlamaRMSNorm.forward, modeling_llama.apply_rotary_pos_emb
    with pytest.raises(RuntimeError), fused_norm_and_rope(model):
        assert modeling_llama.LlamaRMSNorm.forward is not norm and modeling_llama.apply_rotary_pos_emb is not rope
        raise RuntimeError("training failed")
    assert modeling_llama.LlamaRMSNorm.forward is norm and modeling_llama.apply_rotary_pos_emb is rope


def test_other_dtypes_go_to_the_original(tmp_path, monkeypatch):
    model = tiny("llama", tmp_path).to(torch.bfloat16)
    calls = []
    with fused_norm_and_rope(model) as swapped:
        monkeypatch.setattr(RMSNormFunction, "apply", lambda *a: calls.append(a))  # after the install check
        model(input_ids=torch.arange(10).view(1, 10))
    assert swapped and calls == []  # swapped in, but bf16 ran transformers' own norm
