"""Padding-free attention without FlashAttention: each packed example attends only to itself.

transformers runs padding-free batches (one flattened row, position ids reset per example) through SDPA with a
block-diagonal mask over the whole row, so attention costs (sum of lengths)^2. Slicing the row at the example
boundaries (the collator's `cu_seq_lens_q`) and running causal SDPA per example costs sum(length^2): about
batch-size times less attention work, and no mask to build. This is what FlashAttention's varlen kernel does on
GPUs; here it is the CPU/MPS/older-GPU path.
"""

from __future__ import annotations

NAME = "tunesmith_varlen_sdpa"


def varlen_sdpa_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Causal SDPA per packed example when boundaries are given; plain SDPA (with its mask) otherwise."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    gqa = query.shape[1] != key.shape[1]
    sizes = torch.diff(bounds).tolist()
    if sum(sizes) != query.shape[2]:
        raise ValueError(f"packed boundaries cover {sum(sizes)} positions, the row has {query.shape[2]}")
    # split, not one slice per example: a slice's backward writes its gradient into a zeroed copy of the
    # whole row (batch-size full-row fills per tensor and layer); split's backward is one concatenation.
    pieces = [
        torch.nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, scale=scaling, is_causal=True, enable_gqa=gqa
        )
        for q, k, v in zip(query.split(sizes, dim=2), key.split(sizes, dim=2), value.split(sizes, dim=2))
        if q.shape[2]
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None


def register() -> str:
    """Register the attention (and SDPA's mask function for non-packed batches) under NAME; returns NAME."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_sdpa_attention)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    return NAME


def use_varlen_attention(model) -> bool:
    """Switch a model on SDPA to the per-example attention (True), leaving other kernels alone (False)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) != "sdpa":
        return False
    base.set_attn_implementation(register())
    return True


def restore_sdpa(model) -> None:
    """Back to plain SDPA before saving, so the saved config loads anywhere without tunesmith."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) == NAME:
        base.set_attn_implementation("sdpa")
