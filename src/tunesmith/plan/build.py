"""Config -> Plan: model shape (meta device), the run's workload (its own data), memory by part, time per step.

    plan = make_plan(config, device="cpu")       # no weights are loaded
    print(format_plan(plan))                      # plan/report.py

The same function serves `tunesmith plan` and the check `tunesmith train` runs before loading anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

from tunesmith.config.schema import Config
from tunesmith.plan.memory import PAIRED_METHODS, Part, Setup, memory_parts
from tunesmith.plan.params import ModelShape, lora_params, model_config, model_shape
from tunesmith.plan.workload import Workload, grpo_workload, sft_workload

MASK_SAMPLE = 300  # examples tokenized with the real loss mask to measure the trained share
GIB = 2**30


@dataclass
class Plan:
    model: str
    device: str
    precision: str
    mode: str
    method: str
    setup: Setup
    shape: ModelShape
    workload: Workload
    parts: list[Part]
    peak: float  # bytes
    capacity: float  # bytes available on the device
    capacity_note: str
    time: dict = field(default_factory=dict)  # seconds per step by part, "total"
    calibration: dict = field(default_factory=dict)
    flops_per_token: float = 0.0
    assumptions: list[str] = field(default_factory=list)
    advice: list[dict] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.peak <= self.capacity

    @property
    def seconds_per_step(self) -> float | None:
        return self.time.get("total")

    @property
    def total_seconds(self) -> float | None:
        return self.seconds_per_step * self.workload.steps if self.seconds_per_step is not None else None

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(fits=self.fits, seconds_per_step=self.seconds_per_step, total_seconds=self.total_seconds)
        return out


@dataclass
class Inputs:
    """What make_plan reads from disk once; advice re-plans variants of the config from it."""

    shape: ModelShape
    lengths: list[int]  # tokens per training example (untruncated; prompts for GRPO)
    trained: list[float]  # trained share per sampled example
    hf_config: object = None  # the transformers config (the time probes build the run's layer from it)
    rejected: list[int] = field(default_factory=list)  # paired preference methods: prompt + rejected tokens


SLOW_SECONDS = 3600  # advice on speed is offered for runs longer than this


def plan_config(
    config: Config, device: str | None = None, memory: float | None = None, calibrate_time: bool = True
) -> Plan:
    """The plan with advice: changes that would fit when it does not, or run faster when it is slow."""
    from tunesmith.plan.advice import advise

    inputs = read_inputs(config)
    plan = make_plan(config, device, memory, inputs=inputs, calibrate_time=calibrate_time)
    if not plan.fits or (plan.total_seconds or 0) > SLOW_SECONDS:
        plan.advice = advise(config, plan, inputs, device, memory)
    return plan


def make_plan(
    config: Config,
    device: str | None = None,
    memory: float | None = None,
    calibrate_time: bool = True,
    inputs: Inputs | None = None,
    fresh_calibration: bool = False,
) -> Plan:
    """The memory and time plan of `config` on `device` (default: train.device), without loading weights."""
    device, precision = resolve_device(config, device)
    inputs = inputs or read_inputs(config)
    setup = make_setup(config, device, precision, inputs.shape)
    workload = make_workload(config, inputs, setup)
    from tunesmith.plan.capacity import device_capacity
    from tunesmith.plan.overhead import framework_overhead

    overhead, overhead_note = framework_overhead(device, config.method)
    parts, peak = memory_parts(inputs.shape, setup, workload, overhead)
    capacity, capacity_note = (memory, "given with --memory") if memory else device_capacity(device)
    plan = Plan(
        model=config.model.name_or_path,
        device=device,
        precision=precision,
        mode=config.train.mode,
        method=config.method,
        setup=setup,
        shape=inputs.shape,
        workload=workload,
        parts=parts,
        peak=peak,
        capacity=capacity,
        capacity_note=capacity_note,
    )
    plan.assumptions = assumptions(plan, overhead_note)
    if calibrate_time:
        add_time(plan, config, inputs.hf_config, fresh_calibration)
    return plan


def resolve_device(config: Config, device: str | None) -> tuple[str, str]:
    """(device, precision) as training would choose them; a GPU that is not here is planned for, not probed."""
    from tunesmith.model.device import pick_device

    requested = device or config.train.device
    dev = pick_device(requested)
    precision = config.train.precision
    if precision == "auto":
        precision = _gpu_precision() if dev == "cuda" else "fp32"
    return dev, precision


def _gpu_precision() -> str:
    import torch

    return "bf16" if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else "fp16"


def make_setup(config: Config, device: str, precision: str, shape: ModelShape) -> Setup:
    from tunesmith.train.prepare import activation_checkpointing
    from tunesmith.train.trainer_setup import optimizer_name

    like_ctx = SimpleNamespace(config=config, plan=SimpleNamespace(device=device, precision=precision))
    lora = config.lora
    adapter = lora_params(shape, lora.r, lora.target_modules, lora.use_dora) if config.train.mode != "full" else 0
    dtype = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(config.model.dtype)
    return Setup(
        device=device,
        precision=precision,
        mode=config.train.mode,
        method=config.method,
        optimizer=optimizer_name(like_ctx),
        checkpointing=activation_checkpointing(like_ctx),
        batching=run_batching(config, device),
        lora_params=adapter,
        rank=lora.r,
        dropout=lora.dropout,
        target_modules=lora.target_modules,
        double_quant=config.quantization.double_quant,
        weights_dtype=dtype,
        beta=config.grpo.beta if config.method == "grpo" else 0.0,
        precompute_reference=config.preference.precompute_reference,
        lean_memory=config.train.lean_memory and device == "cpu",
    )


def run_batching(config: Config, device: str) -> str:
    """The batching training will use: SFT and DPO follow train.batching (train/batching.py,
    train/preference.py); GRPO and the other preference trainers pad."""
    from tunesmith.train.batching import resolve_batching

    if config.method in ("sft", "dpo"):
        return resolve_batching(config.train.batching, device)
    return "padded"


def make_workload(config: Config, inputs: Inputs, setup: Setup) -> Workload:
    if config.method == "grpo":
        return grpo_workload(inputs.lengths, config)
    cut = config.data.max_length
    lengths = [min(n, cut) for n in inputs.lengths]
    rejected = [min(n, cut) for n in inputs.rejected] if inputs.rejected else None
    return sft_workload(lengths, inputs.trained, config, setup.batching, rejected)


def read_inputs(config: Config) -> Inputs:
    """The training split's token lengths (like `data stats`) and the model's shape (meta device)."""
    from tunesmith.data.splits import prepare_splits

    rows = prepare_splits(config)["train"]
    tokenizer = run_tokenizer(config, rows)
    hf_config = model_config(config, vocab_size=len(tokenizer))
    shape = model_shape(hf_config, config.model.name_or_path)
    if config.method == "grpo":
        return Inputs(shape, prompt_lengths(tokenizer, rows, config), [], hf_config)
    from tunesmith.data.stats import count_tokens

    shares = trained_shares(tokenizer, rows[:MASK_SAMPLE], config)
    rejected = rejected_lengths(tokenizer, rows) if config.method in PAIRED_METHODS else []
    return Inputs(shape, count_tokens(tokenizer, rows), shares, hf_config, rejected)


def rejected_lengths(tokenizer, rows: list[dict]) -> list[int]:
    """Tokens of prompt + rejected per preference pair (the rows' messages are prompt + chosen), counted the
    same way; [] when the rows are not conversations (then both sequences are priced at the chosen length)."""
    from tunesmith.data.stats import count_tokens

    if not all(isinstance(r.get("prompt"), list) and isinstance(r.get("rejected"), list) for r in rows):
        return []
    return count_tokens(tokenizer, [{"messages": r["prompt"] + r["rejected"]} for r in rows])


def run_tokenizer(config: Config, rows: list[dict]):
    """The tokenizer training would use (a `tiny:` one is trained on the same text as train trains it on)."""
    from tunesmith.data.clean import texts_of
    from tunesmith.model.base import tokenizer_for_run
    from tunesmith.model.load import tokenizer_for

    if config.train.init_from:
        return tokenizer_for_run(config, config.model.name_or_path)
    return tokenizer_for(config.model, texts=["\n".join(texts_of(row)) for row in rows])


def trained_shares(tokenizer, rows: list[dict], config: Config) -> list[float]:
    """Per example, the share of positions whose next token is trained (where logits are computed)."""
    from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_example

    shares = []
    for row in rows:
        tok = tokenize_example(tokenizer, row, config.data.loss_on, config.data.max_length)
        n = max(1, len(tok.labels))
        shares.append(sum(1 for x in tok.labels[1:] if x != IGNORE_INDEX) / n)
    return shares


def prompt_lengths(tokenizer, rows: list[dict], config: Config) -> list[int]:
    from tunesmith.data.tokenize import prompt_ids
    from tunesmith.rewards.prompts import grpo_rows

    return [len(prompt_ids(tokenizer, r["prompt"])) for r in grpo_rows(rows, config)]


def add_time(plan: Plan, config: Config, hf_config, fresh: bool = False) -> None:
    """Seconds per step and in total, from a calibration on this machine (skipped for a device not here)."""
    from tunesmith.plan.speed import calibrate, flops_per_token, mean_context, step_time

    if not device_present(plan.device):
        plan.assumptions.append(f"time not estimated: no {plan.device} device here to calibrate on")
        return
    try:
        cal = calibrate(hf_config, config, plan.shape, plan.setup, plan.workload, use_cache=not fresh)
    except Exception as exc:  # noqa: BLE001 - an architecture the probe cannot build: no time, the memory stands
        plan.assumptions.append(f"time not estimated: the layer probe failed ({type(exc).__name__}: {exc})")
        return
    plan.time = step_time(plan.shape, plan.setup, plan.workload, cal)
    plan.assumptions += time_assumptions(plan, cal)
    plan.flops_per_token = flops_per_token(
        plan.shape, plan.setup, plan.workload.trained_share, mean_context(plan.workload)
    )
    plan.calibration = {
        "cached": cal.cached,
        "seconds": round(cal.seconds, 2),
        "layer_ms": cal.layer_train_s * 1e3,
        "layer_forward_ms": cal.layer_forward_s * 1e3,
        "head_ms": cal.head_s * 1e3,
        "typical_micro_batch": sum(plan.workload.typical_lengths),
        "threads": cal.threads,
    }


def time_assumptions(plan: Plan, cal) -> list[str]:
    w = plan.workload
    tokens = sum(w.typical_lengths)
    return [
        f"time: one decoder layer, the output layer + loss and the optimizer timed here ({cal.threads} threads, "
        f"{'cached calibration' if cal.cached else 'calibrated now'}) on a {tokens:,}-token micro-batch of this "
        "run's typical example lengths; a step costs grad_accum x (layers x layer + output layer + the rest) + "
        "the optimizer",
        "time: the machine as busy as during the calibration (a calibration on a loaded machine predicts slower "
        "steps; it is cached under $TUNESMITH_CACHE/plan/calibration.json, delete it to calibrate again)",
        *generation_load_note(w, cal),
    ]


def generation_load_note(workload, cal) -> list[str]:
    """GRPO on several CPU threads: the probes' medians of millisecond generation calls miss what another
    busy process costs the run (planned 24-40% under the measured step, docs/plan.md)."""
    if not workload.generations or cal.device != "cpu" or cal.threads < 2:
        return []
    return [
        "time: GRPO's generation is thousands of millisecond calls; with another process busy on this CPU the "
        f"steps slow more than the calibration shows (measured 1.3-1.7x the plan at {cal.threads} threads with one "
        "core busy: docs/plan.md)"
    ]


def device_present(device: str) -> bool:
    import torch

    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


def assumptions(plan: Plan, overhead_note: str) -> list[str]:
    w, s = plan.workload, plan.setup
    out = [
        f"{w.examples:,} training {'prompts' if plan.method == 'grpo' else 'examples'}, {w.steps:,} steps of {w.micro_batches // max(1, w.steps)} micro-batch(es) x {w.batch_size}",
        f"batching {s.batching}: the largest micro-batch of this run holds {w.peak_batch_tokens:,} positions ({w.peak_batch_trained:,} trained)",
        f"precision {s.precision}, optimizer {s.optimizer}, activation checkpointing {'on' if s.checkpointing else 'off'}",
        f"framework overhead: {overhead_note}",
    ]
    if plan.device == "cpu" and not s.lean_memory:
        out.append(
            "CPU: the peak is the live tensors; glibc's heap keeps freed tensor memory for reuse, so the process's "
            "peak RSS can be higher (measured up to 74% above, docs/plan.md); train.lean_memory: true makes this the peak"
        )
    if plan.method == "grpo":
        out.append(
            f"GRPO: every completion runs to grpo.max_completion_length ({w.completion_length}) tokens (an untrained model rarely stops early)"
        )
    return out
