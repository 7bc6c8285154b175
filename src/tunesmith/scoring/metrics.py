"""Generation metrics as pure functions `(predictions, references, **columns) -> {name: score}`.

Shared by `tunesmith eval` (averaged over a test set) and GRPO rewards (per completion: call with one-item
lists, or use the `*_score` helpers that score a single pair). Every score lies in [0, 1] except `bleu`, which is
sacreBLEU's corpus score on its usual 0-100 scale (the figure papers and leaderboards quote).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tunesmith.errors import ConfigError
from tunesmith.scoring.extract import extract_json, extract_number, numbers_equal

Metric = Callable[..., dict[str, float]]


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    assert len(predictions) == len(references), f"{len(predictions)} predictions for {len(references)} references"


def normalize_text(text: str) -> str:
    """Trim and collapse whitespace: the comparison exact match uses."""
    return re.sub(r"\s+", " ", (text or "").strip())


def exact_match(predictions: Sequence[str], references: Sequence[str], **columns) -> dict[str, float]:
    """Share of predictions equal to the reference after whitespace normalisation."""
    _check_lengths(predictions, references)
    return {
        "exact_match": _mean([float(normalize_text(p) == normalize_text(r)) for p, r in zip(predictions, references)])
    }


def rouge(predictions: Sequence[str], references: Sequence[str], **columns) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (rouge-score, Porter stemming)."""
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p) for p, r in zip(predictions, references)]
    return {name: _mean([s[name].fmeasure for s in scores]) for name in ("rouge1", "rouge2", "rougeL")}


def parse_json_strict(text: str):
    """The prediction parsed as JSON when the whole text (or one ```json fence) is JSON, else None."""
    body = (text or "").strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    try:
        return json.loads(fence.group(1) if fence else body)
    except (json.JSONDecodeError, ValueError):
        return None


def json_equal(a, b) -> bool:
    """JSON equality: key order ignored, 1 == 1.0, but true is not 1 and "1" is not 1 (Python's == says True == 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def json_scores(prediction: str, reference: str, fields: Sequence[str] | None = None) -> dict[str, float]:
    """One pair: json_valid, json_match (whole object) and json_field_<name> per reference field."""
    parsed = parse_json_strict(prediction)
    ref = reference if isinstance(reference, (dict, list)) else extract_json(reference)
    out = {"json_valid": float(parsed is not None), "json_match": float(parsed is not None and json_equal(parsed, ref))}
    keys = list(fields) if fields is not None else (list(ref) if isinstance(ref, dict) else [])
    got = parsed if isinstance(parsed, dict) else {}
    for key in keys:
        expected = ref.get(key) if isinstance(ref, dict) else None
        out[f"json_field_{key}"] = float(key in got and json_equal(got[key], expected))
    return out


def json_metric(
    predictions: Sequence[str], references: Sequence[str], json_fields: Sequence[str] | None = None, **columns
) -> dict[str, float]:
    """JSON validity, whole-object match, per-field accuracy and their mean (json_field_accuracy)."""
    _check_lengths(predictions, references)
    rows = [json_scores(p, r, json_fields) for p, r in zip(predictions, references)]
    names = list(dict.fromkeys(name for row in rows for name in row))
    out = {name: _mean([row.get(name, 0.0) for row in rows]) for name in names}
    fields = [name for name in names if name.startswith("json_field_")]
    if fields:
        out["json_field_accuracy"] = _mean([out[name] for name in fields])
    return out


def numeric_score(prediction: str, reference: str) -> float:
    """1.0 when the final numbers of prediction and reference are equal (GSM8K '####', 'the answer is', ...)."""
    return float(numbers_equal(extract_number(prediction), extract_number(str(reference))))


def numeric(predictions: Sequence[str], references: Sequence[str], **columns) -> dict[str, float]:
    """Numeric-answer accuracy and the share of predictions with any number in them."""
    _check_lengths(predictions, references)
    return {
        "numeric_accuracy": _mean([numeric_score(p, r) for p, r in zip(predictions, references)]),
        "numeric_found": _mean([float(extract_number(p) is not None) for p in predictions]),
    }


def bleu(predictions: Sequence[str], references: Sequence, **columns) -> dict[str, float]:
    """Corpus BLEU exactly as sacreBLEU computes it (13a tokenizer, exp smoothing, 0-100).

    A reference is one string, or a list of strings when an example has several references.
    """
    import sacrebleu

    _check_lengths(predictions, references)
    per_example = [[r] if isinstance(r, str) else list(r) for r in references]
    streams = [
        [refs[i] if i < len(refs) else None for refs in per_example]
        for i in range(max(map(len, per_example), default=1))
    ]
    return {"bleu": float(sacrebleu.corpus_bleu(list(predictions), streams).score)}


BUILTIN: dict[str, Metric] = {
    "exact_match": exact_match,
    "rouge": rouge,
    "json": json_metric,
    "numeric": numeric,
    "bleu": bleu,
}


def load_function(spec: str, what: str = "metric", base_dir: str | Path | None = None) -> Callable:
    """A user function named `path/to/file.py:function` or `package.module:function` (custom metrics and
    GRPO rewards). A relative file is looked up in the working directory, then in `base_dir`."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(f"{what} '{spec}': expected file.py:function or module:function")
    if target.endswith(".py"):
        module = _module_from_file(target, spec, what, base_dir)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"{what} '{spec}': cannot import module '{target}': {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"{what} '{spec}': '{target}' has no function '{name}'")
    return function


def _module_from_file(target: str, spec: str, what: str, base_dir: str | Path | None):
    candidates = [Path(target)] + ([Path(base_dir) / target] if base_dir else [])
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        where = "the working directory" + (f" or {base_dir}" if base_dir else "")
        raise ConfigError(f"{what} '{spec}': file '{target}' not found (no such file in {where})")
    module_name = f"tunesmith_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # picklable functions (TRL may copy rewards to workers)
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - report the user's import error with its file
        raise ConfigError(f"{what} '{spec}': {path} failed to import: {type(exc).__name__}: {exc}") from None
    return module


def resolve_metric(name: str) -> tuple[str, Metric]:
    """(label, function) for a name in `eval.metrics`: a built-in, or a custom file.py:fn / module:fn."""
    if name in BUILTIN:
        return name, BUILTIN[name]
    if ":" in name:
        function = load_function(name)
        return name.rpartition(":")[2], _as_metric(function, name)
    raise ConfigError(
        f"eval.metrics: unknown metric '{name}'",
        hint=f"use loss, {', '.join(BUILTIN)}, or a custom file.py:function / module:function",
    )


def _as_metric(function: Callable, spec: str) -> Metric:
    """Wrap a custom metric so a bare float result becomes {function name: value}."""
    label = spec.rpartition(":")[2]

    def metric(predictions, references, **columns) -> dict[str, float]:
        result = function(predictions, references, **columns)
        if isinstance(result, (int, float)):
            return {label: float(result)}
        if not isinstance(result, dict):
            raise ConfigError(f"metric '{spec}' returned {type(result).__name__}; return a float or a dict of floats")
        return {str(k): float(v) for k, v in result.items()}

    return metric
