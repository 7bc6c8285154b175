"""The fused LoRA path (model/fused_lora.py) gives peft's values and gradients, and falls back where it must.

Tolerances, absolute: 1e-10 for single layers, run in float64 (the two paths add the same terms in another
order; float32 rounding alone moved gradients of size ~50 by 1.5e-5), and 1e-5 for a whole float32 model
(values of order 1). Each planted fault below moves them by more than 100 times the tolerance.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig
from peft.tuners.lora.layer import Linear as LoraLinear
from torch.utils.checkpoint import CheckpointError

from tunesmith.model import fused_lora
from tunesmith.model.dropout import FastDropout
from tunesmith.model.fused_lora import FusedLoraVariant, LoraDelta, use_fused_lora

TOLERANCE = 1e-10
MODEL_TOLERANCE = 1e-5


def lora_layer(n_in: int, n_out: int, p: float) -> LoraLinear:
    torch.manual_seed(0)
    base = torch.nn.Linear(n_in, n_out, bias=False).requires_grad_(False)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=p)
    layer = LoraLinear(base, "default", config=config, r=8, lora_alpha=16, lora_dropout=p)
    torch.nn.init.normal_(layer.lora_B["default"].weight, std=0.5)  # peft starts B at zero: no signal
    if p:
        layer.lora_dropout["default"] = FastDropout(p)
    return layer.double()


def run(layer: LoraLinear, x: torch.Tensor, seed: int = 3) -> dict[str, torch.Tensor]:
    """Output and gradients of a weighted sum of the output (weights fixed by the seed)."""
    layer.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    torch.manual_seed(seed)
    out = layer(x)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * weights).sum().backward()
    return {
        "out": out.detach(),
        "x": x.grad,
        "A": layer.lora_A["default"].weight.grad.clone(),
        "B": layer.lora_B["default"].weight.grad.clone(),
    }


def largest_difference(layer: LoraLinear, x: torch.Tensor) -> float:
    layer.lora_variant.pop("default", None)
    plain = run(layer, x)
    assert use_fused_lora(layer) == 1
    fused = run(layer, x)
    return max((plain[k] - fused[k]).abs().max().item() for k in plain)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("shape", [(1, 37, 24), (3, 11, 24)])
def test_fused_lora_equals_peft_forward_and_backward(p, shape):
    layer = lora_layer(24, 40, p).train()
    x = torch.randn(shape, dtype=torch.float64)
    assert largest_difference(layer, x) < TOLERANCE
    assert largest_difference(layer.eval(), x) < TOLERANCE  # eval: no dropout


def test_the_fused_path_is_taken_and_drops_entries():
    layer = lora_layer(24, 40, 0.3).train()
    use_fused_lora(layer)
    calls = []
    original = LoraDelta.forward

    def counting(ctx, *args):
        calls.append(args[-1])  # the rate it drops at
        return original(ctx, *args)

    LoraDelta.forward = staticmethod(counting)
    try:
        run(layer, torch.randn(1, 9, 24, dtype=torch.float64))
    finally:
        LoraDelta.forward = staticmethod(original)
    assert calls == [0.3]


def broken_backward_unmasked(ctx, grad):
    """Planted: the input gradient flows through dropped entries."""
    kept, thin, weight_a, weight_b, drops = ctx.saved_tensors
    flat = grad.reshape(-1, grad.shape[-1])
    grad_thin = torch.mm(flat, weight_b).mul_(ctx.factor)
    grad_x = torch.mm(grad_thin, weight_a).view(grad.shape[:-1] + (weight_a.shape[1],))
    return grad_x, grad, torch.mm(grad_thin.t(), kept), torch.mm(flat.t(), thin).mul_(ctx.factor), None, None


def broken_backward_b_unscaled(ctx, grad):
    """Planted: lora_B's gradient without the scaling / (1 - p) factor."""
    kept, thin, weight_a, weight_b, drops = ctx.saved_tensors
    flat = grad.reshape(-1, grad.shape[-1])
    grad_thin = torch.mm(flat, weight_b).mul_(ctx.factor)
    grad_x = torch.mm(grad_thin, weight_a)
    grad_x.view(-1).index_fill_(0, drops, 0.0)
    grad_x = grad_x.view(grad.shape[:-1] + (weight_a.shape[1],))
    return grad_x, grad, torch.mm(grad_thin.t(), kept), torch.mm(flat.t(), thin), None, None


def forward_without_dropout_scale(ctx, x, result, weight_a, weight_b, scaling, p):
    """Planted: the kept entries not scaled by 1 / (1 - p)."""
    return ORIGINAL_FORWARD(ctx, x, result, weight_a, weight_b, scaling * (1.0 - p), p)


ORIGINAL_FORWARD = LoraDelta.forward


@pytest.mark.parametrize(
    "part, fault",
    [
        ("backward", broken_backward_unmasked),
        ("backward", broken_backward_b_unscaled),
        ("forward", forward_without_dropout_scale),
    ],
)
def test_planted_faults_in_the_fused_path_are_caught(monkeypatch, part, fault):
    monkeypatch.setattr(LoraDelta, part, staticmethod(fault))
    layer = lora_layer(24, 40, 0.3).train()
    assert largest_difference(layer, torch.randn(2, 13, 24, dtype=torch.float64)) > 100 * TOLERANCE


def test_peft_formula_runs_where_the_fused_path_does_not_apply(monkeypatch):
    layer = lora_layer(24, 40, 0.1).float().train()
    use_fused_lora(layer)
    monkeypatch.setattr(LoraDelta, "apply", lambda *a: pytest.fail("fused path taken"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(1, 5, 24)).dtype == torch.bfloat16
    layer.lora_A.double()  # float64 adapters on a float32 base: peft casts the input, the result stays float32
    layer.lora_B.double()
    assert layer(torch.randn(1, 5, 24)).dtype == torch.float32
    layer.lora_dropout["default"] = torch.nn.AlphaDropout(0.1)  # a dropout it does not know
    assert layer(torch.randn(1, 5, 24)).shape == (1, 5, 40)


def test_whole_model_loss_gradients_and_merge_equal_peft(tiny_qwen2):
    from tunesmith.config import load_config
    from tunesmith.model.adapters import add_adapters
    from tunesmith.model.load import load_model

    config = load_config(overrides=["lora.dropout=0.1"])
    fused = add_adapters(load_model(str(tiny_qwen2)), config)
    plain = add_adapters(load_model(str(tiny_qwen2)), config)
    layers = [m for m in plain.modules() if isinstance(m, LoraLinear)]
    assert layers and all(isinstance(m.lora_variant["default"], FusedLoraVariant) for m in layers)
    for m in layers:
        m.lora_variant.clear()
        torch.nn.init.normal_(m.lora_B["default"].weight, std=0.05)
    fused.load_state_dict(plain.state_dict())
    ids = torch.randint(0, plain.config.vocab_size, (2, 20))
    losses = []
    for model in (plain, fused):
        model.train()
        torch.manual_seed(5)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], abs=MODEL_TOLERANCE)
    grads = {n: p.grad for n, p in plain.named_parameters() if p.requires_grad}
    for name, param in fused.named_parameters():
        if param.requires_grad:
            assert (param.grad - grads[name]).abs().max().item() < MODEL_TOLERANCE, name
    merged_plain = plain.merge_and_unload().state_dict()
    merged_fused = fused.merge_and_unload().state_dict()
    assert all(torch.allclose(merged_fused[k], v, atol=MODEL_TOLERANCE, rtol=0) for k, v in merged_plain.items())


def test_only_plain_linear_bases_get_the_variant():
    layer = lora_layer(24, 40, 0.1)

    class Quantized(torch.nn.Linear):
        pass

    layer.base_layer.__class__ = Quantized
    assert use_fused_lora(layer) == 0
    assert fused_lora._dropout_rate(torch.nn.Identity()) == 0.0


def checkpointed_gradients(model_dir, fused: bool) -> dict[str, torch.Tensor]:
    from tunesmith.config import load_config
    from tunesmith.model.adapters import add_adapters
    from tunesmith.model.load import load_model

    torch.manual_seed(0)
    model = add_adapters(load_model(str(model_dir)), load_config(overrides=["lora.dropout=0.1"]), True)
    for m in model.modules():
        if isinstance(m, LoraLinear):
            torch.nn.init.normal_(m.lora_B["default"].weight, std=0.05)
            if not fused:
                m.lora_variant.clear()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_fused_lora_under_activation_checkpointing_equals_peft(tiny_llama, monkeypatch):
    """Checkpointing re-runs each layer's forward in the backward: the fused path must drop the same entries
    again (torch restores the RNG state), or its gradients belong to another mask."""
    plain = checkpointed_gradients(tiny_llama, fused=False)
    fused = checkpointed_gradients(tiny_llama, fused=True)
    assert max((fused[n] - plain[n]).abs().max().item() for n in plain) < MODEL_TOLERANCE
    draws = []
    original = fused_lora.dropped_positions

    def fresh_draw_on_recompute(n, p, device=None, dtype=torch.float32):  # planted: the recompute draws others
        draws.append(n)
        if len(draws) % 2 == 0:
            torch.rand(1)
        return original(n, p, device, dtype)

    monkeypatch.setattr(fused_lora, "dropped_positions", fresh_draw_on_recompute)
    try:  # caught by torch's own check on the recomputed tensors, or else by the gradients
        planted = checkpointed_gradients(tiny_llama, fused=True)
        caught = max((planted[n] - plain[n]).abs().max().item() for n in plain) > 100 * MODEL_TOLERANCE
    except CheckpointError:
        caught = True
    assert caught
