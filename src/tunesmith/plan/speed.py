"""Time per step: FLOPs per token from the model's shapes, priced with this machine's measured rates.

The calibration (calibrate) times, on the target device and in the training precision: one matmul of each
distinct Linear shape of the model at the run's micro-batch size (so small, inefficient shapes are priced
as they really run), the output layer, a large elementwise add (memory bandwidth), many tiny ops (the
per-op dispatch cost that dominates small models), one AdamW step, and for QLoRA a 4-bit dequantization.
It takes a few seconds and is cached under $TUNESMITH_CACHE/plan/ by device, threads and shapes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from tunesmith.plan.overhead import cache_dir

# torch ops per decoder layer for one forward + backward (norms, projections, rotary, attention, MLP,
# residuals, and their backward nodes), counted with torch.profiler on a Llama layer (docs/plan.md).
OPS_PER_LAYER = 110
OPS_PER_ADAPTED_LINEAR = 14  # LoRA: dropout, A, B, scale, add, forward and backward
OPS_PER_DECODE_LAYER = 45  # one generation step: forward only, with the KV-cache update
OPS_PER_DECODE_STEP = 60  # generate(): logits processors, sampling, stopping criteria
OPTIMIZER_PROBE = 4_000_000  # parameters in the timed AdamW step (scaled to the trainable count)


@dataclass
class Calibration:
    device: str
    precision: str
    threads: int
    matmul_s: dict[str, float] = field(default_factory=dict)  # "MxKxN" -> seconds for one forward matmul
    bandwidth: float = 0.0  # bytes/s of a large elementwise add (3 tensors moved)
    op_s: float = 0.0  # seconds per tiny op (dispatch cost)
    adamw_s_per_param: float = 0.0
    dequant_s_per_weight: float = 0.0
    layer_step_s: float = 0.0  # fixed cost of one decoder layer's forward + backward (Python, dispatch, small ops)
    layer_decode_s: float = 0.0  # the same for one generation step (forward only)
    seconds: float = 0.0  # how long the calibration took
    cached: bool = False

    def matmul(self, m: int, k: int, n: int) -> float:
        return self.matmul_s[f"{m}x{k}x{n}"]

    def rate(self, m: int, k: int, n: int) -> float:
        return 2 * m * k * n / self.matmul(m, k, n)


def calibrate(
    device: str,
    precision: str,
    shapes: list[tuple[int, int, int]],
    qlora: bool = False,
    use_cache: bool = True,
    probe: dict | None = None,
) -> Calibration:
    """Measured rates for these (M, K, N) matmul shapes on `device` (cached unless use_cache=False).

    `probe` describes the run for the per-layer fixed cost: model_type, mode, dropout, batch_size,
    batching, generations (see layer_costs)."""
    import torch

    threads = torch.get_num_threads()
    key = json.dumps([device, precision, threads, sorted(set(shapes)), qlora, probe])
    path = cache_dir() / "calibration.json"
    cache = _read(path) if use_cache else {}
    if key in cache:
        return Calibration(**{**cache[key], "cached": True})
    started = time.perf_counter()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    cal = Calibration(device, precision, threads)
    for m, k, n in sorted(set(shapes)):
        cal.matmul_s[f"{m}x{k}x{n}"] = _time_matmul(m, k, n, dtype, device)
    cal.bandwidth = _bandwidth(device)
    cal.op_s = _op_time(device)
    cal.adamw_s_per_param = _adamw_time(device)
    cal.dequant_s_per_weight = _dequant_time(device) if qlora else 0.0
    if probe:
        try:
            cal.layer_step_s, cal.layer_decode_s = layer_costs(device, **probe)
        except Exception:  # noqa: BLE001 - an architecture the tiny probe cannot build: fall back to op counts
            cal.layer_step_s = cal.layer_decode_s = 0.0
    cal.seconds = time.perf_counter() - started
    if use_cache:
        cache = _read(path)
        cache[key] = {k: v for k, v in asdict(cal).items() if k != "cached"}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache), encoding="utf-8")
    return cal


def _timed(fn, device: str, min_seconds: float = 0.05, max_reps: int = 20) -> float:
    """Median seconds of fn() after one warm-up call (median: robust to other processes on the machine)."""
    fn()
    _sync(device)
    times = []
    total = 0.0
    while len(times) < 3 or (total < min_seconds and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        total += times[-1]
    return sorted(times)[len(times) // 2]


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def _time_matmul(m: int, k: int, n: int, dtype, device: str) -> float:
    import torch

    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    return _timed(lambda: a @ b, device)


def _bandwidth(device: str) -> float:
    import torch

    n = 16_000_000
    a, b = torch.randn(n, device=device), torch.randn(n, device=device)
    out = torch.empty_like(a)
    return 3 * 4 * n / _timed(lambda: torch.add(a, b, out=out), device)


def _op_time(device: str) -> float:
    import torch

    x = torch.randn(8, 64, device=device)
    reps = 200

    def ops():
        y = x
        for _ in range(reps):
            y = y + 1.0
        return y

    return _timed(ops, device) / reps


def _adamw_time(device: str) -> float:
    import torch

    p = torch.nn.Parameter(torch.randn(OPTIMIZER_PROBE, device=device))
    p.grad = torch.randn_like(p)
    opt = torch.optim.AdamW([p], lr=1e-4, fused=device in ("cpu", "cuda"))  # what train.optimizer auto runs
    return _timed(opt.step, device) / OPTIMIZER_PROBE


def _dequant_time(device: str) -> float:
    import torch

    try:
        import bitsandbytes.functional as F
    except ImportError:
        return 0.0
    w = torch.randn(1024, 1024, device=device)
    q, state = F.quantize_4bit(w, quant_type="nf4")
    return _timed(lambda: F.dequantize_4bit(q, state), device) / w.numel()


def layer_costs(
    device: str, model_type: str, mode: str, dropout: float, batch_size: int, batching: str, generations: int = 0
) -> tuple[float, float]:
    """(seconds per layer per training micro-batch, per layer per decode step) of the fixed work that FLOPs
    miss: module calls, autograd bookkeeping, LoRA wrappers, per-example attention, small kernels.

    Timed on tiny random models of the same architecture and adapters (built from a config, nothing loaded)
    with a few tokens per example, at 2 and 4 layers: the difference is the cost of 2 layers.
    """
    times = {}
    for layers in (2, 4):
        model = _probe_model(model_type, layers, mode, dropout, batching)
        batch = _probe_batch(batch_size, batching)
        times[layers] = (
            _timed(lambda: _train_step(model, batch), device),
            _timed(lambda: _decode_step(model, max(1, generations)), device),
        )
    step = max(0.0, (times[4][0] - times[2][0]) / 2)
    decode = max(0.0, (times[4][1] - times[2][1]) / 2)
    return step, decode


def _probe_model(model_type: str, layers: int, mode: str, dropout: float, batching: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.config.load import load_config
    from tunesmith.model.adapters import add_adapters

    config = AutoConfig.for_model(
        model_type,
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.config.use_cache = False
    peft_mode = "lora" if mode == "qlora" else mode  # the 4-bit kernels are priced by the dequantization probe
    model = add_adapters(model, load_config(data={"train": {"mode": peft_mode}, "lora": {"dropout": dropout}}))
    if batching == "padding_free":
        from tunesmith.train.varlen_attention import use_varlen_attention

        use_varlen_attention(model)
    return model.train()


def _probe_batch(batch_size: int, batching: str) -> dict:
    from tunesmith.train.batching import Collator

    features = [{"input_ids": [5 + i % 7] * 8, "labels": [5 + i % 7] * 8} for i in range(batch_size)]
    return Collator(batching, _PadTokenizer())(features)


class _PadTokenizer:
    """Just what the padded collator asks of a tokenizer."""

    pad_token_id = 0
    padding_side = "right"

    def pad(self, features, **kwargs):
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.tensor([f["input_ids"] + [0] * (longest - len(f["input_ids"])) for f in features])
        return {"input_ids": ids, "attention_mask": (ids != -1).long()}


def _train_step(model, batch: dict) -> None:
    out = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False)
    out.logits.float().mean().backward()


def _decode_step(model, sequences: int) -> None:
    import torch

    with torch.no_grad():
        model(input_ids=torch.ones(sequences, 1, dtype=torch.long), use_cache=False)


def _read(path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _round_up(n: float, multiple: int = 64) -> int:
    return max(multiple, int(-(-int(n) // multiple) * multiple))


def micro_batch_rows(workload) -> tuple[int, int]:
    """(positions computed, trained positions) of a mean micro-batch, rounded up to multiples of 64."""
    accum = max(1, workload.micro_batches // max(1, workload.steps))
    computed = workload.computed_tokens_per_step / accum
    trained = (
        workload.batch_size * (workload.completion_length + 1)
        if workload.generations
        else computed * workload.trained_share
    )
    return _round_up(computed), _round_up(trained)


def matmul_shapes(shape, workload) -> list[tuple[int, int, int]]:
    """The (M, K, N) matmuls a step runs: each distinct layer Linear and the output layer (and for GRPO
    the same at generation width)."""
    rows, trained = micro_batch_rows(workload)
    out = [(rows, n_in, n_out) for _, n_in, n_out in shape.layer_linears] + [(trained, shape.hidden, shape.vocab)]
    if workload.generations:
        g = workload.generations
        out += [(g, n_in, n_out) for _, n_in, n_out in shape.layer_linears] + [(g, shape.hidden, shape.vocab)]
    return sorted(set(out))


def attention_flops(shape, tokens: float, mean_context: float) -> float:
    """Forward FLOPs of attention scores and weighted values (causal: each token sees mean_context keys)."""
    return 4 * shape.layers * shape.heads * shape.head_dim * tokens * mean_context


def flops_per_token(shape, setup, trained_share: float, mean_context: float) -> float:
    """Training FLOPs per token: forward 2N, backward 4N (full) or 2N (frozen weights: input gradients only),
    + 2N with checkpointing; the output layer only at trained positions; + attention."""
    linear = 2 * shape.linear_weights
    head = 2 * shape.hidden * shape.vocab * trained_share
    passes = (3 if setup.mode == "full" else 2) + (1 if setup.checkpointing else 0)
    adapter = 6 * setup.lora_params if setup.mode != "full" else 0
    attention = attention_flops(shape, 1, mean_context) * (3 + (1 if setup.checkpointing else 0))
    return linear * passes + head * (3 if setup.mode == "full" else 2) + adapter + attention


def step_time(shape, setup, workload, cal: Calibration, elementwise_bytes_per_token: float) -> dict:
    """Seconds per optimizer step, by part (train pass, optimizer, generation for GRPO)."""
    rows, trained = micro_batch_rows(workload)
    accum = max(1, workload.micro_batches // max(1, workload.steps))
    passes = (3 if setup.mode == "full" else 2) + (1 if setup.checkpointing else 0)
    layer = sum(cal.matmul(rows, n_in, n_out) for _, n_in, n_out in shape.layer_linears)
    head = cal.matmul(trained, shape.hidden, shape.vocab) * (3 if setup.mode == "full" else 2)
    context = mean_context(workload)
    q_rate = cal.rate(rows, shape.hidden, shape.layer_linears[0][2])
    attention = attention_flops(shape, rows, context) * (3 + (1 if setup.checkpointing else 0)) / q_rate
    elementwise = 3 * elementwise_bytes_per_token * rows * shape.layers / cal.bandwidth
    ops = shape.layers * cal.layer_step_s if cal.layer_step_s else _op_constants(shape, setup) * cal.op_s
    dequant = (
        shape.linear_weights * cal.dequant_s_per_weight * (2 + (1 if setup.checkpointing else 0))
        if setup.mode == "qlora"
        else 0.0
    )
    parts = {
        "matmuls": accum * (layer * shape.layers * passes + head),
        "attention": accum * attention,
        "elementwise": accum * elementwise,
        "fixed per-layer cost": accum * ops,
        "4-bit dequantization": accum * dequant,
        "optimizer": (shape.params if setup.mode == "full" else setup.lora_params) * cal.adamw_s_per_param,
    }
    if workload.generations:
        parts["generation"] = generation_time(shape, workload, cal)
    parts["total"] = sum(parts.values())
    return parts


def _op_constants(shape, setup) -> float:
    """Ops per micro-batch when no per-layer probe was timed (counted on a Llama layer, docs/plan.md)."""
    adapted = len(shape.layer_linears) if setup.mode != "full" else 0
    return (OPS_PER_LAYER + adapted * OPS_PER_ADAPTED_LINEAR) * shape.layers


def generation_time(shape, workload, cal: Calibration) -> float:
    """GRPO: completion_length decode steps of all completions at once, forward only, with a KV cache."""
    g = workload.generations
    per_token = shape.layers * sum(cal.matmul(g, n_in, n_out) for _, n_in, n_out in shape.layer_linears)
    per_token += cal.matmul(g, shape.hidden, shape.vocab)
    if cal.layer_decode_s:
        per_token += shape.layers * cal.layer_decode_s + OPS_PER_DECODE_STEP * cal.op_s
    else:
        per_token += (OPS_PER_DECODE_LAYER * shape.layers + OPS_PER_DECODE_STEP) * cal.op_s
    return workload.completion_length * per_token


def mean_context(workload) -> float:
    """Mean number of keys a token attends to (about half its example's length, causal)."""
    return (workload.mean_length + 1) / 2
