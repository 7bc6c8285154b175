"""Tiny random configs for the model families llama.cpp's converter supports and transformers builds locally.

Each family gets the same small shape (layers, hidden, heads) plus what the family needs to be itself:
head_dim where the default is large (gemma 256, qwen3 128), GPT-NeoX's partial rotary and parallel
residual, Gemma-2's soft-capping and sliding window. `smollm` is Llama with tied embeddings, as SmolLM2.
"""

from __future__ import annotations

FAMILIES = ("llama", "smollm", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt_neox")
MODEL_TYPE = {"smollm": "llama"}  # family -> transformers model_type, where they differ
TIED = {"smollm", "qwen2", "gemma", "gemma2"}  # as the real models of the family ship


def family_config(family: str, vocab: int, layers: int, hidden: int, heads: int, special: dict):
    """A transformers config for a tiny random model of `family` (special: pad/eos/bos token ids)."""
    from transformers import AutoConfig

    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
        tie_word_embeddings=family in TIED,
        **special,
    )
    return AutoConfig.for_model(MODEL_TYPE.get(family, family), **common, **_extras(family, hidden // heads))


def _extras(family: str, head_dim: int) -> dict:
    if family in ("llama", "smollm", "qwen2", "qwen3", "mistral"):
        return {"rms_norm_eps": 1e-6, **({"head_dim": head_dim} if family == "qwen3" else {})}
    if family == "gemma":
        return {"head_dim": head_dim, "rms_norm_eps": 1e-6}
    if family == "gemma2":
        return {"head_dim": head_dim, "rms_norm_eps": 1e-6, "query_pre_attn_scalar": head_dim, "sliding_window": 64}
    if family == "phi3":
        return {"rms_norm_eps": 1e-6, "original_max_position_embeddings": 4096}
    if family == "gpt_neox":
        return {"rotary_pct": 0.25, "use_parallel_residual": True, "layer_norm_eps": 1e-5}
    raise ValueError(family)
