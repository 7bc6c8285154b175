"""Evaluate a run on its test split: base vs tuned (vs other runs) on the same prompts with the same decoding.

Setup (read the run, its config and the examples), run (loss + generation + metrics per model), save
(eval/outputs.jsonl, eval/outputs.csv, eval/outputs.xlsx, eval/metrics.json).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tunesmith.config.schema import Config
from tunesmith.data.example import Example, example_meta
from tunesmith.data.formats import tools_of
from tunesmith.data.preference import add_system_prompt
from tunesmith.errors import DataError, TunesmithError
from tunesmith.eval.loss import answer_loss
from tunesmith.eval.outputs import write_outputs
from tunesmith.eval.preference import preference_scores
from tunesmith.generate.generate import GenerationSettings, generate, load_for_generation
from tunesmith.run_dir import RunDir, is_run_dir, read_jsonl
from tunesmith.scoring.metrics import resolve_metric

PREFERENCE_KEYS = ("prompt", "chosen", "rejected", "completion", "label")


@dataclass
class EvalItem:
    """One test example: the prompt turns, the reference answer and the row's other columns."""

    example: Example
    prompt: list[dict] | None
    reference: str | None
    meta: dict


def read_examples(path: Path) -> list[Example]:
    """Examples in the internal shape from a JSONL file (internal shape, or `messages`/`text` rows)."""
    if not path.is_file():
        raise DataError(
            f"{path}: no such test file", hint="pass --data FILE, or train a run that saves data/test.jsonl"
        )
    examples = []
    for number, row in enumerate(read_jsonl(path), 1):
        if not row.get("messages") and not row.get("text"):
            raise DataError(f"{path}:{number}: a row needs 'messages' or 'text'")
        meta = row.get("meta") or {k: v for k, v in row.items() if k not in ("messages", "text", "tools")}
        preference = {k: row[k] for k in PREFERENCE_KEYS if k in row}  # pairs / labelled rows of preference runs
        tools = _tools(row, path, number) if row.get("messages") else {}  # rendered into prompts as in training
        examples.append(
            {
                **({"messages": row["messages"]} if row.get("messages") else {"text": row["text"]}),
                **tools,
                **preference,
                "meta": meta,
            }
        )
    return examples


def _tools(row: dict, path: Path, number: int) -> dict:
    """{'tools': [...]} of a row (the run's splits hold them normalized; --data rows may hold a JSON string)."""
    try:
        return tools_of(row)
    except DataError as exc:
        raise DataError(f"{path}:{number}: {exc.message}", hint=exc.hint) from None


def with_system(example: Example, system: str) -> Example:
    """The example with `system` as its first turn when it is a conversation without a system turn.

    A preference row gets it in its prompt too: its preference accuracy and margin score prompt + answer.
    """
    if isinstance(example.get("prompt"), list) and example.get("messages"):
        return add_system_prompt(dict(example), system)
    messages = example.get("messages")
    if not messages or messages[0].get("role") == "system":
        return example
    return {**example, "messages": [{"role": "system", "content": system}, *messages]}


def to_item(example: Example, reference_column: str | None, fallback_column: str | None = None) -> EvalItem:
    """Split a conversation at its last assistant turn: the turns before it are the prompt.

    A prompt-only row (GRPO data) is answered whole and scored against `fallback_column` of its meta.
    """
    meta = example_meta(example)
    messages = example.get("messages") or []
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        column = reference_column or fallback_column
        if messages and column and meta.get(column) is not None:
            return EvalItem(example, messages, _as_text(meta[column]), meta)
        return EvalItem(example, None, None, meta)
    reference = messages[last]["content"]
    if reference_column and meta.get(reference_column) is not None:
        reference = _as_text(meta[reference_column])
    return EvalItem(example, messages[:last], reference, meta)


def _as_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def decoding(config: Config) -> GenerationSettings:
    """The one decoding used for every model compared (greedy unless eval.temperature > 0)."""
    ev = config.eval
    return GenerationSettings(
        max_new_tokens=ev.max_new_tokens,
        temperature=ev.temperature,
        repetition_penalty=ev.repetition_penalty,
        batch_size=ev.batch_size,
        seed=config.run.seed,
    )


def score_model(
    model, tokenizer, items: list[EvalItem], config: Config, metric_names: Sequence[str]
) -> tuple[dict[str, float], list[str]]:
    """Loss + generation metrics of one model; returns (scores, predictions)."""
    examples = [it.example for it in items]
    scores = answer_loss(
        model, tokenizer, examples, config.data.loss_on, config.data.max_length, config.eval.batch_size
    )
    scores.pop("loss_tokens", None)
    scores.update(preference_scores(model, tokenizer, examples, config.data.max_length, config.eval.batch_size))
    generated = [it for it in items if it.prompt is not None]
    if not metric_names or not generated:
        return scores, []
    prompts, tools = [it.prompt for it in generated], [it.example.get("tools") for it in generated]
    predictions = [samples[0] for samples in generate(model, tokenizer, prompts, decoding(config), tools)]
    references = [it.reference for it in generated]
    columns = _columns(generated)
    for name in metric_names:
        _, metric = resolve_metric(name)
        scores.update(metric(predictions, references, json_fields=config.eval.json_fields, **columns))
    return scores, predictions


def _columns(items: list[EvalItem]) -> dict[str, list]:
    # Names the metric signature already uses cannot be passed again as columns.
    reserved = {"predictions", "references", "json_fields"}
    keys = list(dict.fromkeys(k for it in items for k in it.meta if k not in reserved))
    return {k: [it.meta.get(k) for it in items] for k in keys}


def _label(path: str, taken: set[str]) -> str:
    label = Path(path).name or path
    while label in taken:
        label += "'"
    return label


def _models(run_dir: str, base: bool, compare: Sequence[str]) -> list[tuple[str, str, bool]]:
    """(label, target, load_base) for every model to evaluate, in table order."""
    models = [("base", run_dir, True)] if base else []
    models.append(("tuned", run_dir, False))
    for other in compare:
        if not is_run_dir(other):
            raise TunesmithError(f"--compare {other}: not a run directory (no config.yaml)")
        models.append((_label(other, {m[0] for m in models}), other, False))
    return models


def eval_split(run: RunDir) -> tuple[str, Path] | None:
    """('test', path) when the run kept test rows, else ('val', path) when it kept validation rows, else None."""
    for split in ("test", "val"):
        path = run.split_file(split)
        if path.is_file() and path.read_text(encoding="utf-8").strip():
            return split, path
    return None


def evaluate(
    run_dir: str | Path,
    data: str | Path | None = None,
    base: bool | None = None,
    compare: Sequence[str | Path] = (),
    limit: int | None = None,
    checkpoint: str | None = None,
) -> dict:
    """Evaluate a run (and its base, and other runs) on its test split; writes RUN_DIR/eval/ and returns metrics.

    Without a test split (e.g. `data.split.test: 0`) the validation split is used, and the result says so
    (`split`, `note`). `base=None` follows the config's eval.compare_base (on by default). `checkpoint` picks
    the run's weights (best, final, step-N; default best/ when kept) and is recorded as `checkpoint`.
    """
    from tunesmith.model.from_run import checkpoint_folder

    run = RunDir.of(run_dir)
    run.require_finished()
    config = run.config()
    _, weights = checkpoint_folder(run, checkpoint)
    split, source, note = "file", Path(data) if data else None, None
    if source is None:
        found = eval_split(run)
        if found is None:
            raise DataError(
                f"{run.root}: the run kept no test or validation rows to evaluate on",
                hint="pass --data FILE.jsonl, or set data.split.test / data.split.val above 0",
            )
        split, source = found
        if split == "val":
            note = f"no test split in {run.data}: evaluating on the validation split ({source})"
    examples = read_examples(source)[: limit or config.eval.limit or None]
    system = run.read_manifest().system_prompt
    if system:  # rows of --data files get the run's system prompt, as the run's own splits already have it
        examples = [with_system(ex, system) for ex in examples]
    if not examples:
        raise DataError(f"{source}: no examples to evaluate")
    fallback = config.grpo.reference_column if config.method == "grpo" else None
    items = [to_item(ex, config.eval.reference_column, fallback) for ex in examples]
    metric_names = [m for m in config.eval.metrics if m != "loss"]
    for name in metric_names:
        resolve_metric(name)  # fail on a bad metric name before loading any model
    scores: dict[str, dict[str, float]] = {}
    predictions: dict[str, list[str]] = {}
    base = config.eval.compare_base if base is None else base
    for label, target, use_base in _models(str(run_dir), base, [str(c) for c in compare]):
        model, tokenizer = load_for_generation(
            target, base=use_base, checkpoint=weights if target == str(run_dir) else None
        )
        scores[label], predictions[label] = score_model(model, tokenizer, items, config, metric_names)
        del model
        gc.collect()
    result = _result(scores, items, source, decoding(config))
    result.update(split=split, checkpoint=weights, **({"note": note} if note else {}))
    write_outputs(run.eval, result, items, predictions)
    return result


def _result(
    scores: dict[str, dict[str, float]], items: list[EvalItem], source: Path, settings: GenerationSettings
) -> dict:
    """metrics.json: per metric, each model's value and the tuned - base delta."""
    labels = list(scores)
    names = list(dict.fromkeys(n for s in scores.values() for n in s))
    table = {}
    for name in names:
        row = {label: scores[label].get(name) for label in labels}
        if row.get("base") is not None and row.get("tuned") is not None:
            row["delta"] = row["tuned"] - row["base"]
        table[name] = row
    return {
        "data": str(source),
        "examples": len(items),
        "generated": sum(it.prompt is not None for it in items),
        "models": labels,
        "decoding": {k: v for k, v in vars(settings).items() if k not in ("batch_size",)},
        "metrics": table,
    }
