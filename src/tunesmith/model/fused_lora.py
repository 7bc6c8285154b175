"""A LoRA layer's adapter path as one autograd function on CPU, through peft's LoRA-variant hook.

peft computes `result + lora_B(lora_A(dropout(x))) * scaling` as five autograd steps, and on a CPU each is a
pass over a [tokens, features] tensor: the dropout copy, lora_B's output, the scaling, the sum, and in the
backward the scaled gradient and its sum with the base layer's. In bench/sft_throughput.py the adapters took
36% of a LoRA step on top of the frozen matmuls. Here the product is added into the base layer's output by
one addmm (scaling and the dropout's 1 / (1 - p) folded into its alpha), and the backward gets each gradient
from a thin matmul with the factor applied to the thin side. The dropped positions are drawn exactly as
FastDropout draws them (model/dropout.py), so with the same seed both paths drop the same elements.

Used only where it is exact and measured: CPU tensors of one dtype, no autocast, a plain nn.Linear base and
no LoRA bias; everywhere else (CUDA, MPS, QLoRA's quantized bases, DoRA) peft's own formula runs. peft calls
its variant API private and changeable, so `use_fused_lora` checks the hook is there and changes nothing
when it is not.
"""

from __future__ import annotations

import torch

from tunesmith.model.dropout import FastDropout, dropped_positions, scaled_zeroed, zero_at


class LoraDelta(torch.autograd.Function):
    """result + c * (x with the dropped entries zeroed) @ A^T @ B^T, c = scaling / (1 - p); in place in
    `result` unless it is a view."""

    @staticmethod
    def forward(ctx, x, result, weight_a, weight_b, scaling: float, p: float):
        flat = x.reshape(-1, x.shape[-1])
        drops = dropped_positions(flat.numel(), p, flat.device, flat.dtype) if p > 0 else None
        kept = flat if drops is None else scaled_zeroed(flat, drops)
        thin = torch.mm(kept, weight_a.t())  # [tokens, r]
        factor = scaling / (1.0 - p)
        flat_result = result.view(-1, result.shape[-1])
        ctx.save_for_backward(kept, thin, weight_a, weight_b, drops)
        ctx.factor = factor
        if result._is_view():  # a biased nn.Linear's output is a view: autograd cannot take it in place here
            return torch.addmm(flat_result, thin, weight_b.t(), alpha=factor).view(result.shape)
        flat_result.addmm_(thin, weight_b.t(), alpha=factor)
        ctx.mark_dirty(result)
        return result

    @staticmethod
    def backward(ctx, grad):
        kept, thin, weight_a, weight_b, drops = ctx.saved_tensors
        flat_grad = grad.reshape(-1, grad.shape[-1])
        grad_thin = torch.mm(flat_grad, weight_b).mul_(ctx.factor)  # d loss / d thin, [tokens, r]
        grad_x = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad_thin, weight_a)
            if drops is not None:
                zero_at(grad_x, drops)
            grad_x = grad_x.view(grad.shape[:-1] + (weight_a.shape[1],))
        if ctx.needs_input_grad[2]:
            grad_a = torch.mm(grad_thin.t(), kept)
        if ctx.needs_input_grad[3]:
            grad_b = torch.mm(flat_grad.t(), thin).mul_(ctx.factor)
        return grad_x, grad, grad_a, grad_b, None, None


class FusedLoraVariant:
    """peft's LoRA-variant interface (peft.tuners.lora.layer.LoraVariant): plain LoRA, with the fused forward
    where it applies. Merging is plain LoRA's (base weight + B @ A * scaling)."""

    @staticmethod
    def init(module, adapter_name: str, **kwargs) -> None:
        pass

    @staticmethod
    def supports_lora_conversion() -> bool:
        return True

    @staticmethod
    def merge_safe(module, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight + module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module, active_adapter: str, orig_weight: torch.Tensor) -> None:
        orig_weight.data += module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def unmerge(module, active_adapter: str, orig_weight: torch.Tensor) -> torch.Tensor:
        return orig_weight.data - module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def forward(module, active_adapter: str, x: torch.Tensor, result: torch.Tensor, **kwargs) -> torch.Tensor:
        lora_a, lora_b = module.lora_A[active_adapter], module.lora_B[active_adapter]
        dropout, scaling = module.lora_dropout[active_adapter], module.scaling[active_adapter]
        p = _dropout_rate(dropout)
        if p is None or not _fusable(x, result, lora_a.weight, lora_b):
            return result + lora_b(lora_a(dropout(x))) * scaling  # peft's plain LoRA
        return LoraDelta.apply(x, result, lora_a.weight, lora_b.weight, scaling, p)


def _dropout_rate(dropout: torch.nn.Module) -> float | None:
    """The rate the layer drops at now (0 in eval mode); None for a dropout this module does not know."""
    if isinstance(dropout, torch.nn.Identity):
        return 0.0
    if isinstance(dropout, (FastDropout, torch.nn.Dropout)):
        return dropout.p if dropout.training else 0.0
    return None


def _fusable(x: torch.Tensor, result: torch.Tensor, weight_a: torch.Tensor, lora_b: torch.nn.Module) -> bool:
    plain = (torch.Tensor, torch.nn.Parameter)  # not a DTensor or a quantized or subclassed tensor
    return (
        x.device.type == "cpu"
        and x.dtype == result.dtype == weight_a.dtype == lora_b.weight.dtype
        and not torch.is_autocast_enabled("cpu")
        and lora_b.bias is None
        and result.is_contiguous()
        and type(weight_a) in plain
        and type(lora_b.weight) in plain
        and type(result) is torch.Tensor
    )


def use_fused_lora(model) -> int:
    """Give every plain peft LoRA Linear on an nn.Linear base the fused variant; returns how many."""
    try:
        from peft.tuners.lora.layer import Linear
    except ImportError:
        return 0
    fused = 0
    for module in model.modules():
        if type(module) is not Linear or not isinstance(getattr(module, "lora_variant", None), dict):
            continue
        if type(module.get_base_layer()) is not torch.nn.Linear:
            continue
        for adapter in module.lora_A:
            if adapter not in module.lora_variant:  # DoRA and other variants keep their own
                module.lora_variant[adapter] = FusedLoraVariant()
                fused += 1
    return fused
