"""The two or three config changes that would make a run fit (or run faster), each with its new estimate.

Each candidate is the same config with a few `--set` overrides, planned again from the same inputs (the data
is not read twice). Candidates that fit come first, then the smallest peak; when the run already fits,
only changes that make it faster and still fit are offered.
"""

from __future__ import annotations

from tunesmith.config.load import config_to_dict, load_config
from tunesmith.config.schema import Config
from tunesmith.errors import ConfigError

MAX_ADVICE = 3


def candidates(config: Config, plan, lengths: list[int]) -> list[tuple[list[str], str]]:
    """(overrides, why) pairs worth planning for this config."""
    t, s = config.train, plan.setup
    out: list[tuple[list[str], str]] = []
    batch = t.batch_size
    while batch > 1:  # smaller micro-batches, same effective batch
        batch //= 2
        accum = t.grad_accum * (t.batch_size // batch)
        out.append(
            (
                [f"train.batch_size={batch}", f"train.grad_accum={accum}"],
                f"same effective batch ({batch * accum}), smaller micro-batches",
            )
        )
    from tunesmith.data.stats import recommend_max_length

    recommended = recommend_max_length(lengths)
    if config.method != "grpo" and recommended < config.data.max_length:
        out.append(([f"data.max_length={recommended}"], "keeps 99% of this data's examples whole (data stats)"))
    if not s.checkpointing:
        out.append(
            (["train.activation_checkpointing=on"], "recompute activations in backward (about 1/3 more compute)")
        )
    elif plan.fits:
        out.append((["train.activation_checkpointing=off"], "no recompute (faster) when the activations fit"))
    if s.batching == "padded":
        out.append((["train.batching=padding_free"], "no memory or compute spent on padding"))
    if t.mode == "full":
        out.append((["train.mode=lora"], "train LoRA adapters instead of every weight"))
    if t.mode != "qlora" and plan.device != "mps":
        out.append((["train.mode=qlora"], "4-bit base weights"))
    if t.mode != "full" and config.lora.r > 4:
        out.append(([f"lora.r={config.lora.r // 2}"], "a smaller adapter"))
    if plan.device == "cuda" and s.optimizer in ("adamw_torch", "adamw_torch_fused"):
        out.append((["train.optimizer=adamw_8bit"], "8-bit optimizer states"))
    return out


def advise(config: Config, plan, inputs, device: str, memory: float | None) -> list[dict]:
    """Up to three changes, each with its peak memory, fit verdict and time."""
    from tunesmith.plan.build import make_plan

    scored = []
    for overrides, why in candidates(config, plan, inputs.lengths):
        try:  # a change this config's other settings rule out (e.g. qlora on a .gguf base) is no advice
            variant = load_config(data=config_to_dict(config), overrides=overrides)
        except ConfigError:
            continue
        new = make_plan(variant, device, memory, inputs=inputs, calibrate_time=bool(plan.time))
        if plan.fits and not (
            new.fits
            and new.seconds_per_step
            and plan.seconds_per_step
            and new.seconds_per_step < plan.seconds_per_step * 0.95
        ):
            continue
        scored.append(
            {
                "set": overrides,
                "why": why,
                "peak": new.peak,
                "fits": new.fits,
                "seconds_per_step": new.seconds_per_step,
                "total_seconds": new.total_seconds,
            }
        )
    if plan.fits:
        scored.sort(key=lambda a: a["seconds_per_step"] or 0)
    else:
        scored.sort(key=lambda a: (not a["fits"], a["total_seconds"] or 0) if a["fits"] else (True, a["peak"]))
    return _one_per_key(scored)[:MAX_ADVICE]


def _one_per_key(advice: list[dict]) -> list[dict]:
    """Keep the best variant of each kind of change (e.g. one batch size, not four)."""
    seen, out = set(), []
    for item in advice:
        kind = tuple(sorted(s.split("=")[0] for s in item["set"]))
        if kind not in seen:
            seen.add(kind)
            out.append(item)
    return out
