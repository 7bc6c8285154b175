"""The GPU memory formulas (docs/plan.md) against published measurements of a peer stack.

Source: Unsloth's README, "Context length benchmarks" (github.com/unslothai/unsloth, README.md; the same
tables are in unsloth.ai/blog/llama3-3). Its "Hugging Face + FA2" column is the stack tunesmith runs on
(transformers + peft + bitsandbytes + TRL): Llama 3.1 8B Instruct and Llama 3.3 70B Instruct, 4-bit QLoRA
on all linear layers (q, k, v, o, gate, up, down), rank 32, batch size 1, every sequence padded to the
maximum length; the column is the longest context that trained without running out of GPU memory.

We plan the same setup (bf16, activation checkpointing as TRL turns it on, 8-bit AdamW as Unsloth's
scripts use, the loss over every position) and find the longest context whose predicted peak fits each
card. Bound: within 20% of the published context (absolute, on the context length), and "OOM" rows must
not fit at any length. The model shapes are the published config.json values of those models.
"""

from __future__ import annotations

import pytest

from tunesmith.plan.memory import Setup, memory_parts
from tunesmith.plan.overhead import CUDA_CONTEXT_BYTES
from tunesmith.plan.params import lora_params, model_shape
from tunesmith.plan.workload import Workload

GIB = 2**30
TOLERANCE = 0.20

# (GPU memory in GiB, longest context HF + FA2 trained; None = out of memory at any length)
LLAMA_31_8B_HF_FA2 = [(8, None), (12, 932), (16, 2551), (24, 5789), (40, 12264), (48, 15502), (80, 28454)]
LLAMA_33_70B_HF_FA2 = [(48, None), (80, 6916)]

LLAMA_31_8B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    tie_word_embeddings=False,
)
LLAMA_33_70B = dict(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=128256,
    tie_word_embeddings=False,
)


def shape_of(arch: dict):
    from transformers import LlamaConfig

    return model_shape(LlamaConfig(**arch), "llama")


def qlora_setup(shape) -> Setup:
    return Setup(
        device="cuda",
        precision="bf16",
        mode="qlora",
        method="sft",
        optimizer="adamw_8bit",
        checkpointing=True,
        batching="padded",
        lora_params=lora_params(shape, 32, "all-linear"),
        rank=32,
    )


def padded(length: int) -> Workload:
    return Workload(
        examples=1,
        steps=1,
        micro_batches=1,
        batch_size=1,
        mean_length=length,
        max_length_seen=length,
        trained_share=1.0,
        tokens_per_step=length,
        computed_tokens_per_step=length,
        peak_batch_tokens=length,
        peak_batch_trained=length,
        peak_longest=length,
    )


def peak(shape, setup, length: int) -> float:
    return memory_parts(shape, setup, padded(length), CUDA_CONTEXT_BYTES)[1]


def longest_context(shape, setup, capacity: float) -> int:
    """The longest padded sequence whose predicted peak fits `capacity` (0 when nothing fits)."""
    if peak(shape, setup, 1) > capacity:
        return 0
    low, high = 1, 1 << 21
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if peak(shape, setup, mid) <= capacity else (low, mid - 1)
    return low


@pytest.mark.parametrize(
    "arch, rows",
    [(LLAMA_31_8B, LLAMA_31_8B_HF_FA2), (LLAMA_33_70B, LLAMA_33_70B_HF_FA2)],
    ids=["llama-3.1-8b", "llama-3.3-70b"],
)
def test_longest_context_matches_published_hf_fa2_figures(arch, rows):
    shape = shape_of(arch)
    setup = qlora_setup(shape)
    for gib, published in rows:
        predicted = longest_context(shape, setup, gib * GIB)
        if published is None:
            assert predicted == 0, f"{gib} GiB: published OOM, predicted {predicted} tokens fit"
        else:
            assert abs(predicted - published) <= TOLERANCE * published, (
                f"{gib} GiB: predicted {predicted}, published {published}"
            )


def test_dropping_the_logits_term_is_caught():
    """Planted bug: without the output-layer logits (1.8 MB per token at a 128k vocabulary) the 8B limits
    come out far too long and the published table rejects the formula."""
    import tunesmith.plan.memory as memory

    shape = shape_of(LLAMA_31_8B)
    setup = qlora_setup(shape)
    original = memory.logits_bytes
    try:
        memory.logits_bytes = lambda shape, setup, positions: (0.0, "")
        predicted = longest_context(shape, setup, 24 * GIB)
    finally:
        memory.logits_bytes = original
    assert abs(predicted - 5789) > TOLERANCE * 5789


def test_params_of_the_published_shapes():
    """The meta-device counts equal the published sizes: 8.03B (Llama 3.1 8B), 70.55B (Llama 3.3 70B)."""
    assert round(shape_of(LLAMA_31_8B).params / 1e9, 2) == 8.03
    assert round(shape_of(LLAMA_33_70B).params / 1e9, 2) == 70.55
