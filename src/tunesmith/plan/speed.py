"""Time per step: the run's own layer, output layer and optimizer, timed on this machine at the run's shapes.

Seconds per optimizer step = grad_accum x (layers x one layer's forward + backward + the model around the
layers + the output layer and loss + QLoRA's dequantization) + the optimizer (clip, AdamW, zero_grad over the
trainable tensors) [+ a reference forward for DPO/KTO] [+ generation for GRPO].

The calibration (calibrate) measures each term with the thread count and precision training uses (the same
process defaults: torch's intra-op threads), on a micro-batch of the run's typical example lengths (plan/
probe.py), then moves it to the mean of the micro-batches the run times (batch_scales: attention by sequences
and squared lengths, the rest by positions; plan/workload.py draws those batches as the samplers do). It
takes a few seconds and is cached under $TUNESMITH_CACHE/plan/ by device, threads and shapes. FLOPs per
token are still reported (report and advice) but no longer price the step: on a CPU most of a small model's
step is not matmul work.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

from tunesmith.plan.overhead import cache_dir
from tunesmith.plan.probe import CLOCK_ENV, timed
from tunesmith.plan.workload import attention_rows

# part of the calibration cache key: bump when the probes time different code (2: the fused RMSNorm and rotary
# of model/fused_norm_rope.py, which training uses; 3: the decode probe times its two models in alternation), so
# calibrations of the old code are not reused
PROBE_REVISION = 3


@dataclass
class Calibration:
    device: str
    precision: str
    threads: int
    layer_train_s: float = 0.0  # one decoder layer, forward + backward, typical micro-batch
    layer_forward_s: float = 0.0  # the same, forward only without autograd (reference passes)
    around_layers_s: float = 0.0  # embedding lookup, rotary, masks, final norm: forward + backward
    around_layers_forward_s: float = 0.0
    head_s: float = 0.0  # output layer + loss at the typical trained positions (+ a full run's embedding gradient)
    head_forward_s: float = 0.0
    attention_call_s: float = 0.0  # one layer's attention per sequence (forward + backward) ...
    attention_square_s: float = 0.0  # ... and per squared token of it: what moves the layer from batch to batch
    optimizer_s_per_param: float = 0.0  # clip + AdamW step + zero_grad
    optimizer_s_per_tensor: float = 0.0
    dequant_s_per_weight: float = 0.0  # QLoRA: one NF4 dequantization
    decode_layer_s: float = 0.0  # GRPO: one layer, one generation step of all completions
    decode_around_s: float = 0.0  # (the layer-less model's forward: part of generate_token_s)
    decode_head_s: float = 0.0  # the output layer at generation width
    generate_token_s: float = 0.0  # generate() per token around a layer-less model (bookkeeping, sampling)
    seconds: float = 0.0  # how long the calibration took
    cached: bool = False


def calibrate(hf_config, run_config, shape, setup, workload, use_cache: bool = True) -> Calibration:
    """The measured costs of this run's step on setup.device (cached unless use_cache=False)."""
    import torch

    threads = torch.get_num_threads()
    key = json.dumps(
        [
            setup.device,
            setup.precision,
            threads,
            hf_config.to_json_string(use_diff=False),
            asdict(setup),
            workload.typical_lengths,
            workload.typical_trained,
            workload.generations,
            workload.timed_longest,
            os.environ.get(CLOCK_ENV, "wall"),
            PROBE_REVISION,
        ],
        sort_keys=True,
        default=str,
    )
    path = cache_dir() / "calibration.json"
    cache = _read(path) if use_cache else {}
    if key in cache:
        return Calibration(**{**cache[key], "cached": True})
    cal = measure(hf_config, run_config, shape, setup, workload, threads)
    if use_cache:
        cache = _read(path)
        cache[key] = {k: v for k, v in asdict(cal).items() if k != "cached"}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache), encoding="utf-8")
    return cal


def measure(hf_config, run_config, shape, setup, workload, threads: int) -> Calibration:
    from tunesmith.plan import probe
    from tunesmith.plan.measure import return_freed_memory_at_once

    if setup.lean_memory:  # probe with the allocator the run trains with (for the rest of this process)
        return_freed_memory_at_once()
    started = time.perf_counter()
    cal = Calibration(setup.device, setup.precision, threads)
    lengths = workload.typical_lengths
    rows = sum(attention_rows(lengths, setup.batching))
    for name, value in probe.layer_times(hf_config, run_config, setup, lengths).items():
        setattr(cal, name, value)
    cal.head_s, cal.head_forward_s = head_times(shape, setup, workload, rows)
    cal.attention_call_s, cal.attention_square_s = attention_costs(hf_config, setup, workload)
    cal.optimizer_s_per_param, cal.optimizer_s_per_tensor = probe.optimizer_costs(setup.device, setup.optimizer)
    cal.dequant_s_per_weight = _dequant_time(setup.device) if setup.mode == "qlora" else 0.0
    if workload.generations:
        g = workload.generations
        context = max(workload.typical_lengths) - workload.completion_length // 2  # the cache at mid-completion
        cal.decode_layer_s, cal.decode_around_s = probe.decode_times(hf_config, run_config, setup, g, context)
        cal.decode_head_s = probe.head_times(shape, _frozen(setup), g, g)[1]
        prompt = max(1, max(lengths) - workload.completion_length)
        cal.generate_token_s = probe.generate_step_time(hf_config, setup, g, prompt)
    cal.seconds = time.perf_counter() - started
    return cal


def head_times(shape, setup, workload, rows: int) -> tuple[float, float]:
    """The output layer and loss (train step, forward only): GRPO's as TRL's fused head runs it, at every
    position off Triton devices (TRL scores only the completions' with its Triton kernel); the plain probe
    otherwise, or when this TRL has no fused head."""
    from tunesmith.plan import probe

    if workload.generations:
        positions = workload.typical_trained if setup.device == "cuda" else rows - len(workload.typical_lengths)
        fused = probe.grpo_head_times(shape, setup, positions)
        if fused is not None:
            return fused
    return probe.head_times(shape, setup, rows, workload.typical_trained)


def attention_costs(hf_config, setup, workload) -> tuple[float, float]:
    """(seconds per sequence, per squared token) of a layer's attention: t = calls x c0 + sum(length^2) x c2,
    solved from the typical micro-batch and one sequence of the longest timed length (the two differ most in
    how their work splits between calls and squared lengths)."""
    from tunesmith.plan import probe

    rows = typical_rows(workload, setup)
    square, calls = sum(n * n for n in rows), len(rows)
    typical = probe.attention_time(hf_config, setup, rows)
    longest = max(rows + [workload.timed_longest])
    if longest * longest * calls - square < 0.05 * square:  # every sequence about as long: one unknown
        return 0.0, typical / max(1, square)
    alone = probe.attention_time(hf_config, setup, [longest])
    c2 = (typical - calls * alone) / (square - calls * longest * longest)
    c0 = alone - c2 * longest * longest
    if c2 < 0 or c0 < 0:  # probe noise: keep the larger term only
        return (typical / calls, 0.0) if c2 < 0 else (0.0, typical / square)
    return c0, c2


def typical_rows(workload, setup) -> list[int]:
    """The sequence lengths attention sees in the typical micro-batch (padded: every row at the longest)."""
    return attention_rows(workload.typical_lengths, setup.batching)


def batch_scales(workload, setup, cal) -> tuple[float, float, float]:
    """(layer, around, head) factors from the typical micro-batch, which the probes time, to the mean of the
    micro-batches the run times: attention moves with calls and squared lengths, the rest of the layer and
    the model around it with positions, the output layer with trained positions."""
    w = workload
    rows = typical_rows(w, setup)
    if not w.timed_tokens or not rows:
        return 1.0, 1.0, 1.0
    tokens = sum(rows)
    attention = cal.attention_call_s * len(rows) + cal.attention_square_s * sum(n * n for n in rows)
    rest = max(0.0, cal.layer_train_s - attention)
    mean = rest * w.timed_tokens / tokens + cal.attention_call_s * w.timed_examples
    mean += cal.attention_square_s * w.timed_square
    layer = mean / cal.layer_train_s if cal.layer_train_s > 0 else 1.0
    return layer, w.timed_tokens / tokens, w.timed_trained / max(1, w.typical_trained)


def _frozen(setup):
    from dataclasses import replace

    return replace(setup, mode="lora")


def _dequant_time(device: str) -> float:
    import torch

    try:
        import bitsandbytes.functional as F
    except ImportError:
        return 0.0
    w = torch.randn(1024, 1024, device=device)
    q, state = F.quantize_4bit(w, quant_type="nf4")
    return timed(lambda: F.dequantize_4bit(q, state), device) / w.numel()


def micro_batches_per_step(workload) -> int:
    return max(1, workload.micro_batches // max(1, workload.steps))


def trainable_tensors(shape, setup) -> int:
    """Tensors the optimizer loops over: every parameter tensor (full), or A and B (+ DoRA's magnitude) per
    adapted Linear."""
    if setup.mode == "full":
        return shape.tensors
    from tunesmith.plan.params import targeted

    adapted = sum(1 for name, _, _ in shape.layer_linears if targeted(name, setup.target_modules))
    return adapted * shape.layers * 2


def attention_flops(shape, tokens: float, mean_context: float) -> float:
    """Forward FLOPs of attention scores and weighted values (causal: each token sees mean_context keys)."""
    return 4 * shape.layers * shape.heads * shape.head_dim * tokens * mean_context


def flops_per_token(shape, setup, trained_share: float, mean_context: float) -> float:
    """Training FLOPs per token (reported, not used for the time): forward 2N, backward 4N (full) or 2N (frozen
    weights: input gradients only), + 2N with checkpointing; the output layer only at trained positions."""
    linear = 2 * shape.linear_weights
    head = 2 * shape.hidden * shape.vocab * trained_share
    passes = (3 if setup.mode == "full" else 2) + (1 if setup.checkpointing else 0)
    adapter = 6 * setup.lora_params if setup.mode != "full" else 0
    attention = attention_flops(shape, 1, mean_context) * (3 + (1 if setup.checkpointing else 0))
    return linear * passes + head * (3 if setup.mode == "full" else 2) + adapter + attention


def step_time(shape, setup, workload, cal: Calibration) -> dict:
    """Seconds per optimizer step, by part."""
    from tunesmith.plan.memory import REFERENCE_METHODS

    accum = micro_batches_per_step(workload)
    layer_scale, around_scale, head_scale = batch_scales(workload, setup, cal)
    layers = shape.layers * cal.layer_train_s * layer_scale
    dequant = (
        shape.linear_weights * cal.dequant_s_per_weight * (2 + (1 if setup.checkpointing else 0))
        if setup.mode == "qlora"
        else 0.0
    )
    trainable = shape.params if setup.mode == "full" else setup.lora_params
    parts = {
        "decoder layers": accum * layers,
        "embedding, norms, masks": accum * cal.around_layers_s * around_scale,
        "output layer and loss": accum * cal.head_s * head_scale,
        "4-bit dequantization": accum * dequant,
        "optimizer": trainable * cal.optimizer_s_per_param
        + trainable_tensors(shape, setup) * cal.optimizer_s_per_tensor,
    }
    if setup.method in REFERENCE_METHODS and not setup.precompute_reference:
        # LoRA: the base with the adapter off; full: the reference copy (priced as the layer's forward)
        forward = (
            shape.layers * cal.layer_forward_s * layer_scale
            + cal.around_layers_forward_s * around_scale
            + cal.head_forward_s * head_scale
        )
        parts["reference forward"] = accum * (forward + dequant / 2)
    if workload.generations:
        parts["generation"] = generation_time(shape, setup, workload, cal)
    parts["total"] = sum(parts.values())
    return parts


def generation_time(shape, setup, workload, cal: Calibration) -> float:
    """GRPO: a prefill of the prompts, then completion_length decode steps of all completions at once (forward
    only, KV cache), each with the output layer at generation width and generate()'s own per-token work."""
    per_token = shape.layers * cal.decode_layer_s + cal.decode_head_s + cal.generate_token_s
    length = max(1, max(workload.typical_lengths, default=1))
    prompt_share = max(0, length - workload.completion_length) / length
    accum = micro_batches_per_step(workload)
    prefill = accum * shape.layers * cal.layer_forward_s * prompt_share
    return prefill + workload.completion_length * per_token


def mean_context(workload) -> float:
    """Mean number of keys a token attends to (about half its example's length, causal)."""
    return (workload.mean_length + 1) / 2


def _read(path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
