"""Run directory -> one self-contained report.html (inline CSS, charts as embedded PNG, no network).

It reads only what the run wrote: config.yaml, manifest.json, metrics.jsonl, data/, eval/, export/.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from tunesmith.config.schema import Config
from tunesmith.data.stats import count_tokens
from tunesmith.errors import TunesmithError
from tunesmith.model.from_run import load_run_tokenizer
from tunesmith.report import plots
from tunesmith.run_dir import Manifest, RunDir, read_jsonl

SAMPLES = 10
LOWER_IS_BETTER = ("loss", "perplexity")
CARD_LABELS = {
    "json_valid": "valid JSON",
    "json_field_intent": "intent accuracy",
    "json_match": "whole-JSON match",
    "exact_match": "exact match",
    "numeric_accuracy": "answer accuracy",
    "rougeL": "ROUGE-L",
    "preference_accuracy": "preference accuracy",
}


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of a run (default RUN_DIR/report.html) and return its path."""
    run = RunDir.of(run_dir)
    run.require_run()
    context = report_context(run)
    target = Path(out) if out else run.report
    target.write_text(render(context), encoding="utf-8")
    return target


def report_context(run: RunDir) -> dict:
    """Everything the template shows, gathered from the run directory."""
    config = run.config()
    history = run.read_metrics()
    evaluation = _read_json(run.eval / "metrics.json")
    return {
        "name": config.run.name or run.root.name,
        "run_dir": str(run.root),
        "overview": overview(config, run.read_manifest()) + plan_rows(run, run.read_manifest()),
        "config_text": run.config_file.read_text(encoding="utf-8"),
        "cards": summary_cards(history, evaluation),
        "data": data_section(run, config),
        "training": training_section(history),
        "eval": eval_rows(evaluation),
        "eval_info": evaluation,
        "samples": sample_rows(run.eval / "outputs.jsonl"),
        "export": export_section(run.export),
    }


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def plan_rows(run: RunDir, manifest: Manifest) -> list[tuple[str, str]]:
    """Predicted (plan.json, written by `tunesmith train`) vs measured (manifest.json) memory and step time."""
    from tunesmith.plan.guard import PLAN_FILE
    from tunesmith.plan.report import duration, size

    plan, measured = _read_json(run.root / PLAN_FILE), getattr(manifest, "measured", None)
    if not plan or not measured:
        return []
    rows = []
    for label, key, measured_key, fmt in (
        ("peak memory", "peak", "peak_memory", size),
        ("time per step", "seconds_per_step", "seconds_per_step", duration),
    ):
        p, m = plan.get(key), measured.get(measured_key)
        if p and m:
            rows.append((f"{label}: predicted / measured", f"{fmt(p)} / {fmt(m)} ({p / m - 1:+.0%})"))
    return rows


def overview(config: Config, manifest: Manifest) -> list[tuple[str, str]]:
    """Key/value pairs a reader wants first: what was trained, on what, how."""
    train = config.train
    rows = [
        ("base model", manifest.base_model or config.model.name_or_path),
        ("method", f"{config.method} / {train.mode}"),
        ("learning rate", train.learning_rate),
        ("epochs / max steps", f"{train.epochs} / {train.max_steps or '-'}"),
        ("batch", f"{train.batch_size} x {train.grad_accum} accumulation"),
        ("max length", config.data.max_length),
        ("seed", config.run.seed),
        ("device", " / ".join(str(v) for v in (manifest.device, manifest.precision) if v) or None),
        ("started", manifest.start_time),
        ("finished", manifest.end_time),
    ]
    if train.mode in ("lora", "qlora"):
        lora = config.lora
        rows.insert(2, ("LoRA", f"r={lora.r} alpha={lora.alpha} targets={lora.target_modules}"))
    return [(k, str(v)) for k, v in rows if v not in (None, "", "None")]


def _series(history: list[dict], *keys: str) -> list[tuple[float, float]]:
    points = []
    for row in history:
        value = next((row[k] for k in keys if row.get(k) is not None), None)
        if value is not None and row.get("step") is not None:
            points.append((float(row["step"]), float(value)))
    return points


def training_section(history: list[dict]) -> dict:
    """Loss (train + val), GRPO rewards, learning rate and throughput charts."""
    train_loss = _series(history, "loss")
    val_loss = _series(history, "eval_loss")
    speed = _series(history, "tokens_per_s", "tokens_per_second")
    return {
        "loss_chart": plots.line_chart({"train": train_loss, "val": val_loss}, "step", "loss"),
        "reward_chart": reward_chart(history),
        "preference_chart": preference_chart(history),
        "accuracy_chart": accuracy_chart(history),
        "lr_chart": plots.line_chart(
            {"lr": _series(history, "lr", "learning_rate")}, "step", "learning rate", plots.SMALL
        ),
        "speed_chart": plots.line_chart({"speed": speed}, "step", "tokens / s", plots.SMALL),
        "steps": int(max((p[0] for p in train_loss + val_loss), default=0)),
    }


def reward_chart(history: list[dict]) -> str | None:
    """GRPO runs: the weighted total reward and each reward's mean per step (None for SFT runs)."""
    names = sorted(
        {
            k[len("rewards/") : -len("/mean")]
            for row in history
            for k in row
            if k.startswith("rewards/") and k.endswith("/mean")
        }
    )
    series = {"total": _series(history, "reward")} | {name: _series(history, f"rewards/{name}/mean") for name in names}
    series = {name: points for name, points in series.items() if points}
    return plots.line_chart(series, "step", "mean reward") if series else None


def preference_chart(history: list[dict]) -> str | None:
    """DPO/ORPO/KTO/SimPO runs: implicit rewards of chosen and rejected answers, their margin, and KL (KTO)."""
    series = {name: _series(history, f"rewards/{name}") for name in ("chosen", "rejected", "margins")}
    series["kl"] = _series(history, "kl")
    series = {name: points for name, points in series.items() if points}
    return plots.line_chart(series, "step", "reward", plots.SMALL) if series else None


def accuracy_chart(history: list[dict]) -> str | None:
    """Preference runs: the share of pairs whose chosen answer gets the higher reward (train, and val when evaluated)."""
    series = {"train": _series(history, "rewards/accuracies"), "val": _series(history, "eval_rewards/accuracies")}
    series = {name: points for name, points in series.items() if points}
    return plots.line_chart(series, "step", "preference accuracy", plots.SMALL) if series else None


def summary_cards(history: list[dict], evaluation: dict | None) -> list[dict]:
    """The few numbers at the top: final losses, speed, and the biggest metric gains."""
    cards = []
    train_loss, val_loss = _series(history, "loss"), _series(history, "eval_loss")
    speed = [v for _, v in _series(history, "tokens_per_s", "tokens_per_second")]
    if train_loss:
        cards.append(
            {"label": "final train loss", "value": f"{train_loss[-1][1]:.3f}", "note": f"from {train_loss[0][1]:.3f}"}
        )
    if val_loss:
        cards.append(
            {
                "label": "best val loss",
                "value": f"{min(v for _, v in val_loss):.3f}",
                "note": f"{len(val_loss)} evaluations",
            }
        )
    if speed:
        cards.append(
            {"label": "tokens / s", "value": f"{sum(speed) / len(speed):,.0f}", "note": "mean of logged steps"}
        )
    for name, row in _headline_metrics(evaluation):
        cards.append(
            {
                "label": CARD_LABELS.get(name, name),
                "value": plots_fmt(row.get("tuned")),
                "note": f"base {plots_fmt(row.get('base'))}",
            }
        )
    return cards


def _headline_metrics(evaluation: dict | None) -> list[tuple[str, dict]]:
    if not evaluation:
        return []
    metrics = evaluation.get("metrics", {})
    preferred = [
        "preference_accuracy",
        "json_valid",
        "json_field_intent",
        "json_match",
        "exact_match",
        "numeric_accuracy",
        "rougeL",
    ]
    return [(name, metrics[name]) for name in preferred if name in metrics][:3]


def plots_fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.4g}" if abs(value) >= 10 else f"{value:.3f}"


def eval_rows(evaluation: dict | None) -> list[dict]:
    """Rows of the metrics table: value per model and a delta marked better/worse."""
    if not evaluation:
        return []
    rows = []
    for name, row in evaluation.get("metrics", {}).items():
        delta = row.get("delta")
        better = None if not delta else (delta < 0) == (name in LOWER_IS_BETTER)
        rows.append(
            {
                "name": name,
                "values": [plots_fmt(row.get(m)) for m in evaluation.get("models", [])],
                "delta": "-" if delta is None else f"{delta:+.3f}",
                "delta_class": "neutral" if better is None else "better" if better else "worse",
            }
        )
    return rows


def sample_rows(path: Path, count: int = SAMPLES) -> list[dict]:
    if not path.is_file():
        return []
    return read_jsonl(path)[:count]


def data_section(run: RunDir, config: Config) -> dict:
    """Rows per split and a histogram of example lengths (tokens when the run's tokenizer loads)."""
    splits = {
        name: read_jsonl(run.split_file(name)) for name in ("train", "val", "test") if run.split_file(name).is_file()
    }
    examples = [ex for rows in splits.values() for ex in rows]
    lengths, unit = _lengths(run, examples)
    max_length = config.data.max_length if unit == "tokens" else None
    stats = {}
    if lengths:
        ordered = sorted(lengths)
        stats = {
            "mean": f"{sum(lengths) / len(lengths):.1f}",
            "p95": ordered[int(0.95 * (len(ordered) - 1))],
            "max": ordered[-1],
        }
    return {
        "splits": {name: len(rows) for name, rows in splits.items()},
        "unit": unit,
        "stats": stats,
        "histogram": plots.histogram_chart(lengths, f"example length ({unit})", max_length),
    }


def _lengths(run: RunDir, examples: list[dict]) -> tuple[list[int], str]:
    if not examples:
        return [], "tokens"
    try:
        return count_tokens(load_run_tokenizer(run), examples), "tokens"
    except (TunesmithError, OSError, ValueError, ImportError):
        # A report must still render when the tokenizer is gone (e.g. a copied run dir): count characters.
        texts = [" ".join(m["content"] for m in ex.get("messages", [])) or ex.get("text", "") for ex in examples]
        return [len(t) for t in texts], "characters"


def export_section(folder: Path) -> dict | None:
    """Files under export/ with sizes, plus the GGUF parity check (export/parity.json) when there is one."""
    if not folder.is_dir():
        return None
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    if not files:
        return None
    parity = _read_json(folder / "parity.json")
    rows = parity_rows(parity)
    return {
        "files": [{"name": str(p.relative_to(folder)), "size": _size(p.stat().st_size)} for p in files],
        "parity": json.dumps(parity, indent=2) if parity is not None else None,
        "parity_rows": rows,
        "parity_ok": _parity_ok(parity, rows),
    }


def parity_rows(parity) -> list[dict]:
    """One row per GGUF from parity.json's `formats`: verdict, greedy match, logit diff vs its bound, tokenization."""
    formats = parity.get("formats") if isinstance(parity, dict) else None
    if not isinstance(formats, dict):
        return []
    rows = []
    for name, report in formats.items():
        measured, bounds = report.get("measured") or {}, report.get("bounds") or {}
        bound = bounds.get("max_logit_diff")
        rows.append(
            {
                "type": name,
                "match_rate": f"{measured.get('greedy_match_rate', 0):.0%}",
                "max_logit_diff": f"{measured.get('max_logit_diff', 0):.2g}" + (f" (bound {bound:g})" if bound else ""),
                "tokenization": f"{measured.get('tokenization_match_rate', 0):.0%}",
                "exact": report.get("verdict") == "passed",
            }
        )
    return rows


def _parity_ok(parity, rows: list[dict]) -> bool | None:
    """parity.json's verdict: True passed, False failed, None when it was skipped or is absent."""
    verdict = parity.get("verdict") if isinstance(parity, dict) else None
    return {"passed": True, "failed": False}.get(verdict)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def render(context: dict) -> str:
    """Fill the packaged Jinja template (autoescaped: model output may contain HTML)."""
    from jinja2 import Environment, select_autoescape

    template_text = resources.files("tunesmith.report").joinpath("templates/report.html").read_text(encoding="utf-8")
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(template_text).render(**context)
