"""Timed probes at the run's own shapes: what one decoder layer, the output layer and the optimizer cost here.

FLOPs priced at a matmul rate miss most of a small model's step on a CPU: the elementwise work of norms,
rotary embeddings, activations and residuals (memory-bound), per-example attention at the data's real
lengths, adapter wrappers and dropout, autograd bookkeeping. So the layer is not modelled, it is timed: a
model of the run's architecture and width (random weights, built from the config: nothing is loaded) with one
decoder layer and with none, each with the run's adapters, dropout, checkpointing and batching, trains on a
micro-batch of the run's typical example lengths; the difference is one layer. The vocabulary is cut to 256
there (so the layer dominates the difference) and the real output layer and loss are timed on their own, at
the typical number of trained positions.
"""

from __future__ import annotations

import os
import time

PROBE_VOCAB = 256
CLOCK_ENV = "TUNESMITH_PLAN_CLOCK"


def clock() -> float:
    """Seconds on the clock plan and measurement share: wall time, or with TUNESMITH_PLAN_CLOCK=cpu this
    process's CPU time. On one thread, CPU seconds are the wall seconds the work takes on an idle core, which
    other processes on a shared machine cannot inflate (bench/plan_accuracy.py --cpu-clock)."""
    return time.process_time() if os.environ.get(CLOCK_ENV) == "cpu" else time.perf_counter()


def timed(fn, device: str, min_seconds: float = 0.15, max_reps: int = 20) -> float:
    """Median seconds of fn() after a warm-up (median: robust to other processes on the machine)."""
    warm_up(fn, device)
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_seconds and len(times) < max_reps):
        t0 = clock()
        fn()
        sync(device)
        times.append(clock() - t0)
    return sorted(times)[len(times) // 2]


def warm_up(fn, device: str, seconds: float = 0.1, most: int = 5) -> None:
    """Run fn() once, and again while under `seconds` (up to `most` times): the first calls of a process pay
    for kernel selection and for the allocator's heap growing to the step's size, which training pays once."""
    started = clock()
    for _ in range(most):
        fn()
        sync(device)
        if clock() - started > seconds:
            break


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def probe_config(hf_config, layers: int):
    """The model's config with `layers` decoder layers and a 256-token vocabulary (per-layer lists cut too)."""
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    data = text.to_dict()
    data.pop("layer_types", None)  # rebuilt for the new depth
    data.update(num_hidden_layers=layers, vocab_size=PROBE_VOCAB, use_cache=False, tie_word_embeddings=True)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        data[key] = None
    return type(text).from_dict(data)


def probe_model(hf_config, layers: int, run_config, setup):
    """A random model of the run's width with `layers` layers, prepared for training as the run is."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    weights = "fp32" if setup.mode == "full" else setup.precision
    model = AutoModelForCausalLM.from_config(probe_config(hf_config, layers), dtype=dtype[weights]).to(setup.device)
    if layers == 0:  # nothing to adapt: let the gradient flow through embedding and norm, as a layer's would
        model.requires_grad_(True)
    elif setup.mode != "full":
        from tunesmith.config.load import config_to_dict, load_config
        from tunesmith.model.adapters import add_adapters

        # the 4-bit kernels are priced by the dequantization probe; the layer runs as LoRA
        data = config_to_dict(run_config)
        data["train"] = {**data["train"], "mode": "lora", "init_from": None}
        add_adapters_to = load_config(data=data)
        model = add_adapters(model, add_adapters_to, setup.checkpointing)
        model.enable_input_require_grads()
    if setup.checkpointing:  # as the Trainer enables it (transformers 5 renamed the method)
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    if setup.batching == "padding_free":
        from tunesmith.train.varlen_attention import use_varlen_attention

        use_varlen_attention(model)
    return model.train()


def probe_batch(lengths: list[int], batching: str, device: str) -> dict:
    """A collated micro-batch of these example lengths (random token ids), as the run's collator builds it."""
    import random

    from tunesmith.train.batching import Collator

    rng = random.Random(0)
    features = []
    for n in lengths:
        ids = [rng.randrange(3, PROBE_VOCAB) for _ in range(max(1, n))]
        features.append({"input_ids": ids, "labels": ids})
    batch = Collator(batching, _PadTokenizer())(features)
    batch.pop("labels", None)
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


class _PadTokenizer:
    """Just what the padded collator asks of a tokenizer."""

    pad_token_id = 0
    padding_side = "right"

    def pad(self, features, **kwargs):
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.tensor([f["input_ids"] + [0] * (longest - len(f["input_ids"])) for f in features])
        mask = torch.tensor([[1] * len(f["input_ids"]) + [0] * (longest - len(f["input_ids"])) for f in features])
        return {"input_ids": ids, "attention_mask": mask}


def layer_times(hf_config, run_config, setup, lengths: list[int]) -> dict:
    """Seconds of one decoder layer (train step, forward only) and of the model around the layers."""
    import torch

    from tunesmith.model.fused_norm_rope import fused_norm_and_rope

    batch = probe_batch(lengths, setup.batching, setup.device)
    models = [probe_model(hf_config, layers, run_config, setup) for layers in (0, 1)]

    def step(model):
        model(**batch, use_cache=False, logits_to_keep=1).logits.float().sum().backward()
        model.zero_grad(set_to_none=True)

    def forward(model):
        with torch.no_grad():
            model(**batch, use_cache=False, logits_to_keep=1)

    with fused_norm_and_rope(models[1]):  # as training runs them (the default train of every method)
        train, ahead = paired_times(step, models, setup.device), paired_times(forward, models, setup.device)
    return {
        "layer_train_s": train[1],
        "layer_forward_s": ahead[1],
        "around_layers_s": train[0],
        "around_layers_forward_s": ahead[0],
    }


def paired_times(fn, models, device: str, min_seconds: float = 0.3, max_pairs: int = 15) -> tuple[float, float]:
    """(median seconds of fn(models[0]), median of fn(models[1]) - fn(models[0])), timed in alternation: a
    slow spell of the machine then hits both sides of a difference instead of one (one layer is the
    difference of two models)."""
    warm_up(lambda: [fn(model) for model in models], device)
    bare, diffs = [], []
    while len(diffs) < 3 or (sum(bare) + sum(diffs) < min_seconds and len(diffs) < max_pairs):
        times = []
        for model in models:
            t0 = clock()
            fn(model)
            sync(device)
            times.append(clock() - t0)
        bare.append(times[0])
        diffs.append(times[1] - times[0])
    return sorted(bare)[len(bare) // 2], max(0.0, sorted(diffs)[len(diffs) // 2])


def attention_time(hf_config, setup, rows: list[int]) -> float:
    """Seconds of one layer's attention, forward + backward, over sequences of these lengths, as training runs
    it: causal SDPA per example on a packed row (padding-free), or one masked SDPA over rows of one length
    (padded). The run's heads, key/value heads, head size and dtype."""
    import torch

    from tunesmith.train.varlen_attention import varlen_sdpa_attention

    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    heads = text.num_attention_heads
    kv = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setup.precision, torch.float32)
    dev = setup.device
    padded = setup.batching == "padded"
    batch, n = (len(rows), max(rows)) if padded else (1, sum(rows))

    def tensor(h):
        return torch.randn(batch, h, n, head_dim, device=dev, dtype=dtype, requires_grad=True)

    q, k, v = tensor(heads), tensor(kv), tensor(kv)
    bounds = torch.tensor([0, *torch.tensor(rows).cumsum(0).tolist()], device=dev)
    mask = torch.ones(n, n, dtype=torch.bool, device=dev).tril()

    def step():
        if padded:
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=kv != heads)
        else:
            out = varlen_sdpa_attention(None, q, k, v, None, cu_seq_lens_q=bounds)[0]
        out.sum().backward()
        q.grad = k.grad = v.grad = None

    return timed(step, dev)


def head_times(shape, setup, rows: int, trained: int) -> tuple[float, float]:
    """Seconds of the output layer and the cross-entropy loss at `trained` positions (forward + backward, and
    forward only), with the embedding gradient of a full fine-tune (dense, vocabulary x hidden)."""
    import torch
    import torch.nn.functional as F

    dtype = (
        torch.float32
        if setup.mode == "full"
        else {"bf16": torch.bfloat16, "fp16": torch.float16}.get(setup.precision, torch.float32)
    )
    full = setup.mode == "full"
    dev = setup.device
    head = (torch.randn(shape.vocab, shape.hidden, device=dev, dtype=dtype) * 0.02).requires_grad_(full)
    embedding = head if not shape.lm_head else (torch.randn_like(head) * 0.02).requires_grad_(full)
    ids = torch.randint(0, shape.vocab, (max(1, rows),), device=dev)
    keep = torch.arange(min(max(1, trained), max(1, rows)), device=dev)
    targets = torch.randint(0, shape.vocab, (keep.numel(),), device=dev)
    hidden = torch.randn(max(1, rows), shape.hidden, device=dev, dtype=dtype, requires_grad=True)

    def loss():
        x = hidden + F.embedding(ids, embedding) if full else hidden
        logits = x[keep] @ head.T
        return F.cross_entropy(logits.float(), targets, reduction="sum")

    def step():
        loss().backward()
        head.grad = embedding.grad = hidden.grad = None

    def forward():
        with torch.no_grad():
            loss()

    return timed(step, dev), timed(forward, dev)


def grpo_head_times(shape, setup, positions: int) -> tuple[float, float] | None:
    """GRPO's output layer as TRL runs it: its fused LM head (`add_fused_lm_head`), log-probabilities and entropy
    computed in vocabulary tiles without the full logits, timed with TRL's own autograd function at `positions`
    (every position of the batch off Triton devices). None when this TRL has no such function."""
    import torch

    try:
        from trl.kernels.chunked_logprob import ChunkedLogProbFunction
        from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE as chunk
    except ImportError:
        return None
    dev, n = setup.device, max(1, positions)
    weight = torch.randn(shape.vocab, shape.hidden, device=dev) * 0.02  # TRL casts the head to fp32 by default
    hidden = torch.randn(n, shape.hidden, device=dev, requires_grad=True)
    targets = torch.randint(0, shape.vocab, (n,), device=dev)

    def run():
        return ChunkedLogProbFunction.apply(hidden, weight, None, targets, 1.0, chunk, None, 1.0, ("entropy",))

    def step():
        run()[0].sum().backward()
        hidden.grad = None

    def forward():
        with torch.no_grad():
            run()

    return timed(step, dev), timed(forward, dev)


def optimizer_costs(device: str, optimizer: str) -> tuple[float, float]:
    """(seconds per parameter, per tensor) of what the Trainer does after backward: clip the gradient norm,
    the optimizer step, zero the gradients. Timed on one tensor larger than the cache and on many small ones
    (the per-tensor loop dominates LoRA's hundreds of small matrices on a CPU)."""
    import torch

    def cost(params):
        grads = [torch.randn_like(p) for p in params]
        # what train.optimizer resolves to (train/trainer_setup.py optimizer_name)
        kwargs = {"fused": True} if optimizer == "adamw_torch_fused" and device in ("cpu", "cuda") else {}
        opt = torch.optim.AdamW(params, lr=1e-5, **kwargs)

        def step():
            for p, g in zip(params, grads):
                p.grad = g
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        return timed(step, device)

    many = 200
    per_tensor = cost([torch.nn.Parameter(torch.randn(16, device=device)) for _ in range(many)]) / many
    # parameter, gradient and two states of 8M parameters (128 MB) do not fit a CPU's cache, as a real
    # model's do not: a tensor that fits prices the update at cache speed (measured 30% low on a 51M model)
    big = 8_000_000
    per_param = max(0.0, cost([torch.nn.Parameter(torch.randn(big, device=device))]) - per_tensor) / big
    return per_param, per_tensor


def decode_times(hf_config, run_config, setup, sequences: int, context: int) -> tuple[float, float]:
    """(seconds of one decoder layer, of the model around the layers) for one generation step of `sequences`
    completions at once with a KV cache of `context` positions: forward only, with the run's adapters (GRPO
    generates with the model it trains: at a few rows per matmul the adapters' extra small ops count), in
    training mode as TRL leaves the model while it generates (the adapters' dropout runs). The models with no
    layer and with one are timed in alternation (paired_times): a few milliseconds a step, each pair of steps
    sees the same spell of the machine."""
    import torch
    from transformers import DynamicCache

    from tunesmith.model.fused_norm_rope import fused_norm_and_rope

    def prepared(layers: int):
        model = probe_model(hf_config, layers, run_config, setup)
        model.config.use_cache = True
        ids = torch.randint(3, PROBE_VOCAB, (sequences, max(1, context)), device=setup.device)
        cache = DynamicCache(config=probe_config(hf_config, layers))
        with torch.no_grad():
            model(input_ids=ids, past_key_values=cache, use_cache=True)
        return model, cache, ids[:, -1:]

    def step(prepared_model):
        model, cache, one = prepared_model
        with torch.no_grad():
            model(input_ids=one, past_key_values=cache, use_cache=True)
        cache.crop(-1)  # back to `context` positions

    models = [prepared(layers) for layers in (0, 1)]
    with fused_norm_and_rope(models[1][0]):  # GRPO generates inside training, with the fused norm and rotary
        around, layer = paired_times(step, models, setup.device, max_pairs=200)
    return layer, around


def generate_step_time(hf_config, setup, sequences: int, prompt: int, new_tokens: int = 8) -> float:
    """Seconds per generated token of generate() itself (its per-token bookkeeping: cache and mask updates,
    logits processors, sampling) around a layer-less model of the run's width, `sequences` at once."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    config = probe_config(hf_config, 0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(setup.device).eval()
    ids = torch.randint(3, PROBE_VOCAB, (sequences, max(1, prompt)), device=setup.device)
    gen = GenerationConfig(
        do_sample=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0, eos_token_id=None
    )

    def run():
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen)

    return timed(run, setup.device) / new_tokens
