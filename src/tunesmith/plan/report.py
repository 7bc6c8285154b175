"""A plan as terminal text (and the predicted-vs-measured lines for a finished run)."""

from __future__ import annotations

GIB, MIB = 2**30, 2**20


def size(n: float) -> str:
    return f"{n / GIB:,.2f} GiB" if n >= GIB else f"{n / MIB:,.1f} MiB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_plan(plan) -> str:
    s, w, shape = plan.setup, plan.workload, plan.shape
    adapter = f" r{s.rank}" if s.mode != "full" else ""
    lines = [
        f"plan: {plan.model} ({shape.params / 1e6:,.1f}M parameters, {shape.layers} layers x {shape.hidden}, vocab {shape.vocab:,})",
        f"      {plan.method} {s.mode}{adapter} on {plan.device} ({s.precision}), batching {s.batching}",
        f"data: {w.examples:,} {'prompts' if plan.method == 'grpo' else 'examples'}, mean {w.mean_length:,.0f} tokens, "
        f"longest {w.max_length_seen:,}; {w.trained_share:.0%} of positions trained",
        "memory:",
    ]
    for part in plan.parts:
        if part.bytes or part.name in ("weights", "activations"):
            lines.append(f"  {part.name:<22}{size(part.bytes):>12}   {part.note}")
    verdict = "fits" if plan.fits else "DOES NOT FIT"
    share = f" ({plan.peak / plan.capacity:.0%})" if plan.capacity else ""
    lines.append(
        f"  {'peak':<22}{size(plan.peak):>12}   of {size(plan.capacity)}: {plan.capacity_note} -> {verdict}{share}"
    )
    lines += _time_lines(plan)
    lines.append("assumptions:")
    lines += [f"  - {a}" for a in plan.assumptions]
    if plan.advice:
        if plan.fits:
            lines.append("would be faster:")
        else:
            lines.append(
                "would fit:"
                if any(a["fits"] for a in plan.advice)
                else "would help most (none fits on its own; combine them):"
            )
        for a in plan.advice:
            sets = " ".join(f"--set {x}" for x in a["set"])
            fit = "fits" if a["fits"] else "does not fit"
            lines.append(f"  {sets}")
            timing = (
                f", {duration(a['seconds_per_step'])}/step, {duration(a['total_seconds'])} total"
                if a["seconds_per_step"]
                else ""
            )
            lines.append(f"      peak {size(a['peak'])} ({fit}){timing}: {a['why']}")
    elif not plan.fits:
        lines.append("no single change makes it fit: use a smaller model or a device with more memory")
    return "\n".join(lines)


def _time_lines(plan) -> list[str]:
    if not plan.time:
        return []
    w, t, c = plan.workload, plan.time, plan.calibration
    parts = ", ".join(f"{k} {v:.2f}" for k, v in t.items() if k != "total" and v >= 0.005)
    how = "cached" if c.get("cached") else f"measured now in {c.get('seconds', 0):.1f} s"
    return [
        "time:",
        f"  FLOPs per token        {plan.flops_per_token / 1e6:,.1f} MFLOP ({'full: 6N' if plan.mode == 'full' else 'adapters: 4N + adapter'}"
        f"{' + recompute' if plan.setup.checkpointing else ''}, output layer at trained positions, attention)",
        f"  tokens per step        {w.tokens_per_step:,.0f} real, {w.computed_tokens_per_step:,.0f} computed",
        f"  per step               {duration(t['total'])} ({parts})",
        f"  total                  {duration(plan.total_seconds)} for {w.steps:,} steps",
        f"  calibration ({how}): one layer {c.get('layer_ms', 0):,.1f} ms and the output layer + loss "
        f"{c.get('head_ms', 0):,.1f} ms on a {c.get('typical_micro_batch', 0):,}-token micro-batch, {c.get('threads')} threads",
    ]


def format_comparison(predicted: dict, measured: dict) -> str:
    """Predicted vs measured peak memory and seconds per step (run directory's plan.json and manifest)."""
    rows = []
    for label, key, fmt in (("peak memory", "peak", size), ("seconds per step", "seconds_per_step", duration)):
        p, m = predicted.get(key), measured.get(key)
        ratio = f"{p / m:.2f}x" if p and m else "n/a"
        rows.append(
            f"  {label:<18} predicted {fmt(p) if p else 'n/a':>12}   measured {fmt(m) if m else 'n/a':>12}   ({ratio})"
        )
    return "\n".join(rows)
