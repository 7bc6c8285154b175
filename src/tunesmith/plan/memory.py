"""Memory by part for one training run, per device and precision (formulas documented in docs/plan.md).

Everything here is arithmetic on a ModelShape and a Workload; nothing is allocated. The one measured
number is the framework overhead (see overhead.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.plan.params import targeted

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
NF4_BLOCK = 64  # bitsandbytes 4-bit block size: one absmax constant per 64 weights
DOUBLE_QUANT_BLOCK = 256  # double quant: the absmax constants quantized to 8 bit in blocks of 256
OPTIMIZER_BYTES = {  # optimizer state per trainable parameter
    "adamw_torch": 8.0,
    "adamw_torch_fused": 8.0,  # exp_avg + exp_avg_sq in fp32
    "adamw_8bit": 2.0,
    "paged_adamw_8bit": 2.0,  # both states in 8 bit (block constants are < 1%)
    "sgd": 0.0,  # no momentum by default
}
# PyTorch's CUDA caching allocator reserves more than it hands out (block rounding, fragmentation); the
# CUDA out-of-memory limit applies to the reserved amount. 1.1 x allocated, checked against Unsloth's
# published HF + FA2 context limits in tests/unit/test_plan_published.py.
CUDA_RESERVED_FACTOR = 1.1
# Methods that keep a frozen reference model (with LoRA the reference is the base with the adapter off).
REFERENCE_METHODS = ("dpo", "kto")
# Methods that score a chosen and a rejected answer per example: twice the sequences per batch.
PAIRED_METHODS = ("dpo", "orpo", "simpo")


@dataclass
class Setup:
    """The training choices that decide memory and time (resolved from the config for one device)."""

    device: str  # cuda | mps | cpu
    precision: str  # fp32 | bf16 | fp16: activations and (for LoRA) frozen weights
    mode: str  # full | lora | qlora
    method: str  # sft | grpo | dpo | ...
    optimizer: str
    checkpointing: bool
    batching: str  # padding_free | padded
    lora_params: int
    rank: int = 0
    dropout: float = 0.0  # LoRA dropout
    target_modules: str | list = "all-linear"
    double_quant: bool = True
    weights_dtype: str | None = None  # model.dtype when set explicitly
    beta: float = 0.0  # GRPO KL weight (> 0 keeps a reference model)
    precompute_reference: bool = False  # DPO/KTO: reference log-probs computed once before training
    lean_memory: bool = False  # CPU: freed tensor memory returned to the OS at once (plan/measure.py)


@dataclass
class Part:
    name: str
    bytes: float
    note: str = ""


def weight_bytes(shape, setup: Setup) -> tuple[float, str]:
    """The base weights: fp32 for full fine-tunes (mixed precision keeps fp32 masters), the training
    precision for LoRA, 4-bit NF4 + constants for the Linear weights under QLoRA (the rest fp32, as
    peft's prepare_model_for_kbit_training casts it)."""
    if setup.mode == "qlora":
        per_weight = 0.5 + (
            1 / NF4_BLOCK + 4 / (NF4_BLOCK * DOUBLE_QUANT_BLOCK) if setup.double_quant else 4 / NF4_BLOCK
        )
        rest = shape.params - shape.linear_weights
        consts = "double-quantized" if setup.double_quant else "fp32"
        return (
            shape.linear_weights * per_weight + rest * 4,
            f"{shape.linear_weights / 1e6:,.1f}M NF4 ({per_weight:.3f} B each, {consts} constants) + {rest / 1e6:,.1f}M fp32",
        )
    dtype = setup.weights_dtype or ("fp32" if setup.mode == "full" else setup.precision)
    return shape.params * BYTES[dtype], f"{shape.params / 1e6:,.1f}M x {BYTES[dtype]} B ({dtype})"


def trainable_params(shape, setup: Setup) -> int:
    return shape.params if setup.mode == "full" else setup.lora_params


def activation_bytes_per_token(shape, setup: Setup) -> float:
    """Bytes autograd keeps for backward per token and decoder layer (no checkpointing).

    Counted with saved_tensors_hooks on real Llama layers (tests/unit/test_plan.py keeps it honest):
    - always: the layer input, rotary q, the attention output, the mid residual (4h), rotary k and v (2kv),
      the MLP's gate, up and activation outputs (3i), fp32 log-sum-exp per head and two RMS scales;
    - trainable norms (full fine-tune): each norm's normalized input (2h);
    - a Linear's input when its weight trains (full) or its adapter has no dropout: the attention input (h,
      shared by q/k/v), the MLP input (h, shared by gate/up), the MLP product (i); the attention output is
      kept by attention already;
    - an adapter with dropout keeps its dropped input (in) and the dropped positions (int64, p x in; see
      model/dropout.py); every adapter its r-wide A output.
    """
    b = BYTES[setup.precision]
    h, i = shape.hidden, shape.intermediate
    elements = 4 * h + 2 * shape.kv_dim + 3 * i
    if setup.mode == "full":
        elements += 2 * h
    kept_inputs = {}
    position_bytes = 0.0
    for name, n_in, _ in shape.layer_linears:
        group = _input_group(name)
        adapted = setup.mode != "full" and targeted(name, setup.target_modules)
        if setup.mode == "full" or (adapted and setup.dropout == 0):
            kept_inputs[group] = 0 if group == "attention output" else n_in
        if adapted:
            elements += setup.rank + (n_in if setup.dropout > 0 else 0)
            position_bytes += 8 * setup.dropout * n_in
    return b * (elements + sum(kept_inputs.values())) + position_bytes + 4 * (shape.heads + 2)


def _input_group(name: str) -> str:
    """Linears that read the same tensor (q/k/v; gate/up) keep it once."""
    last = name.split(".")[-1]
    if last in ("q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value", "c_attn"):
        return "attention input"
    if last in ("o_proj", "out_proj", "dense", "c_proj") and "attn" in name:
        return "attention output"
    if last in ("gate_proj", "up_proj", "gate_up_proj", "w1", "w3", "fc1", "c_fc"):
        return "mlp input"
    return name


def activation_bytes(shape, setup: Setup, tokens: int) -> tuple[float, str]:
    """Activations of the largest micro-batch: every layer's, or with checkpointing the layer inputs plus
    one layer recomputed during backward."""
    per_layer = activation_bytes_per_token(shape, setup) * tokens
    if not setup.checkpointing:
        return (
            per_layer * shape.layers,
            f"{tokens:,} tokens x {shape.layers} layers x {per_layer / tokens / 1024:,.1f} KiB",
        )
    inputs = shape.layers * shape.hidden * BYTES[setup.precision] * tokens
    return inputs + per_layer, f"{tokens:,} tokens: {shape.layers} checkpointed layer inputs + 1 layer recomputed"


def logits_bytes(shape, setup: Setup, positions: int) -> tuple[float, str]:
    """Output-layer logits at the trained positions, 16 B per position and vocabulary entry at the peak of the
    loss backward: fp32 logits (half-precision ones are upcast: 2 B + 4 B, the half gradient 2 B) + their
    log-softmax 4 B + the gradient flowing back 4 B (+ 4 B in fp32, where logits and upcast are one tensor)."""
    per = 16
    return positions * shape.vocab * per, f"{positions:,} positions x {shape.vocab:,} vocab x {per} B"


TRL_TOKEN_TILE, TRL_VOCAB_TILE = 4096, 32768  # trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE, its chunk_size


def grpo_head_bytes(shape, setup: Setup, positions: int, trained: int) -> tuple[float, str]:
    """GRPO's output layer as TRL runs it (`add_fused_lm_head`): log-probabilities and entropy in tiles of at
    most 4,096 positions x 32,768 vocabulary entries, never the full logits. With Triton (CUDA) a kernel folds
    each tile in place, over the completions' positions only: one tile buffer. Elsewhere the torch fallback
    scores every position and its backward keeps about ten fp32 tiles alive at once (the tile, its scaled and
    tempered copies, log p, p, the gradient and the temporaries of `grad += g * (is_target - p)`; measured on
    a CPU: 270 MiB at 744 positions x 8,192 vocabulary, ten tiles are 233 MiB)."""
    vocab = min(shape.vocab, TRL_VOCAB_TILE)
    if setup.device == "cuda":
        rows, per = min(trained, TRL_TOKEN_TILE), BYTES[setup.precision]
        return rows * vocab * per, f"one {rows:,} x {vocab:,} tile x {per} B (TRL's fused head, Triton)"
    rows = min(positions, TRL_TOKEN_TILE)
    return rows * vocab * 40, f"ten fp32 {rows:,} x {vocab:,} tiles (TRL's fused head, torch fallback)"


def reference_bytes(shape, setup: Setup) -> tuple[float, str]:
    """A frozen reference model (DPO/KTO, GRPO with beta > 0): none with adapters (the adapter is switched
    off), else a second copy of the weights in the training precision."""
    needs = setup.method in REFERENCE_METHODS or (setup.method == "grpo" and setup.beta > 0)
    if not needs:
        return 0.0, ""
    if setup.mode != "full":
        return 0.0, "the base with the adapter switched off (no copy)"
    return shape.params * BYTES[setup.precision], f"a second copy in {setup.precision}"


def checkpoint_pages_bytes(shape, setup: Setup) -> tuple[float, str]:
    """QLoRA on a CPU: the checkpoint file stays memory-mapped after the 4-bit weights are made from it, and
    every page of it was read, so it stays in the resident set for the whole run (measured: a 108M fp32
    checkpoint added 414 MiB of file-backed RSS, /proc/self/status RssFile). The kernel may drop these clean
    pages under pressure, but the peak RSS counts them. Where the weights train in the checkpoint's own dtype
    they are the mapped pages themselves (counted once, as weights); on CUDA the file is host memory."""
    if setup.mode != "qlora" or setup.device != "cpu":
        return 0.0, ""
    return (
        shape.params * shape.checkpoint_bytes,
        f"{shape.params / 1e6:,.1f}M x {shape.checkpoint_bytes} B, read to quantize",
    )


def kv_cache_bytes(shape, setup: Setup, sequences: int, length: int) -> tuple[float, str]:
    """Generation (GRPO): keys and values of every layer for all completions generated at once."""
    total = sequences * length * shape.layers * 2 * shape.kv_dim * BYTES[setup.precision]
    return total, f"{sequences} completions x {length} tokens x {shape.layers} layers x 2 x {shape.kv_dim}"


def memory_parts(shape, setup: Setup, workload, overhead: float) -> tuple[list[Part], float]:
    """Every part of the training memory and the predicted peak."""
    trainable = trainable_params(shape, setup)
    weights, weights_note = weight_bytes(shape, setup)
    tokens, trained = workload.peak_batch_tokens, workload.peak_batch_trained  # both sequences of a pair
    acts, acts_note = activation_bytes(shape, setup, tokens)
    if setup.method == "grpo":  # every position but each sequence's last is scored off Triton
        logits, logits_note = grpo_head_bytes(shape, setup, tokens - workload.batch_size, trained)
    else:
        logits, logits_note = logits_bytes(shape, setup, trained)
    ref, ref_note = reference_bytes(shape, setup)
    optim = OPTIMIZER_BYTES.get(setup.optimizer, 8.0) * trainable
    parts = [
        Part("weights", weights, weights_note),
        Part(
            "adapter",
            setup.lora_params * 4 if setup.mode != "full" else 0,
            f"{setup.lora_params / 1e6:,.2f}M fp32" if setup.mode != "full" else "",
        ),
        Part("gradients", trainable * 4, f"{trainable / 1e6:,.2f}M trainable x 4 B"),
        Part(
            "optimizer",
            optim,
            f"{setup.optimizer}: {OPTIMIZER_BYTES.get(setup.optimizer, 8.0):g} B per trainable parameter",
        ),
        Part("activations", acts, acts_note + (" (activation checkpointing)" if setup.checkpointing else "")),
        Part("logits", logits, logits_note),
        Part("reference model", ref, ref_note),
    ]
    pages, pages_note = checkpoint_pages_bytes(shape, setup)
    if pages:
        parts.append(Part("checkpoint file pages", pages, pages_note))
    step_peak = acts + logits
    if workload.generations:
        kv, kv_note = kv_cache_bytes(shape, setup, workload.generations, workload.max_length_seen)
        parts.append(Part("generation KV cache", kv, kv_note))
        step_peak = max(step_peak, kv)  # generation and the training step do not overlap
    parts.append(
        Part("framework overhead", overhead, "measured: libraries, tokenizer, allocator (see plan assumptions)")
    )
    persistent = weights + parts[1].bytes + parts[2].bytes + optim + ref + pages
    factor = CUDA_RESERVED_FACTOR if setup.device == "cuda" else 1.0
    if factor != 1.0:
        parts.append(
            Part(
                "allocator reserve",
                (persistent + step_peak) * (factor - 1),
                f"CUDA caching allocator: reserved = {factor} x allocated",
            )
        )
    return parts, (persistent + step_peak) * factor + overhead
