"""Write evaluation results: per-example outputs side by side (JSONL, CSV, XLSX) and metrics.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tunesmith.run_dir import write_jsonl

# Metrics where lower is better (the table colours their deltas the other way round).
LOWER_IS_BETTER = {"loss", "perplexity"}


def output_rows(items, predictions: dict[str, list[str]]) -> list[dict]:
    """One row per generated example: prompt, reference, then each model's answer."""
    generated = [it for it in items if it.prompt is not None]
    rows = []
    for i, item in enumerate(generated):
        row = {"index": i, "prompt": item.prompt[-1]["content"] if item.prompt else "", "reference": item.reference}
        for label, preds in predictions.items():
            if preds:
                row[label] = preds[i]
        row["messages"] = item.prompt
        rows.append(row)
    return rows


def write_outputs(eval_dir: Path, result: dict, items, predictions: dict[str, list[str]]) -> dict[str, Path]:
    """eval/metrics.json, eval/outputs.jsonl, eval/outputs.csv and eval/outputs.xlsx."""
    eval_dir.mkdir(parents=True, exist_ok=True)
    rows = output_rows(items, predictions)
    paths = {"metrics": eval_dir / "metrics.json", "jsonl": eval_dir / "outputs.jsonl", "csv": eval_dir / "outputs.csv"}
    paths["metrics"].write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_jsonl(paths["jsonl"], rows)
    flat = [{k: v for k, v in row.items() if k != "messages"} for row in rows]
    columns = list(flat[0]) if flat else ["index", "prompt", "reference"]
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
    xlsx = _write_xlsx(eval_dir / "outputs.xlsx", columns, flat)
    if xlsx:
        paths["xlsx"] = xlsx
    return paths


def _write_xlsx(path: Path, columns: list[str], rows: list[dict]) -> Path | None:
    try:
        from openpyxl import Workbook
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    except ImportError:
        # openpyxl is a regular dependency; a broken environment still gets told, never a silent gap.
        import sys

        print(
            f"{path} not written: openpyxl is missing (pip install openpyxl); the same outputs are in "
            f"{path.with_suffix('.csv')} and {path.with_suffix('.jsonl')}",
            file=sys.stderr,
        )
        return None
    book = Workbook()
    sheet = book.active
    sheet.title = "outputs"
    sheet.append(columns)
    for row in rows:
        # Raw model output can hold control characters that Excel cells may not contain.
        sheet.append(
            [ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in (row.get(c) for c in columns)]
        )
    book.save(path)
    return path


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if abs(value) >= 10 else f"{value:.3f}"


def metrics_table(result: dict):
    """A compact rich Table: one row per metric, one column per model, and the delta."""
    from rich.table import Table

    models = result["models"]
    has_delta = "base" in models and "tuned" in models
    table = Table(title=f"eval on {result['examples']} examples", title_justify="left")
    table.add_column("metric")
    for label in models:
        table.add_column(label, justify="right")
    if has_delta:
        table.add_column("delta", justify="right")
    for name, row in result["metrics"].items():
        cells = [format_value(row.get(label)) for label in models]
        if has_delta:
            cells.append(_delta_cell(name, row.get("delta")))
        table.add_row(name, *cells)
    return table


def _delta_cell(name: str, delta: float | None) -> str:
    if delta is None:
        return "-"
    better = delta < 0 if name in LOWER_IS_BETTER else delta > 0
    colour = "green" if better else "red" if delta else "dim"
    return f"[{colour}]{delta:+.3f}[/{colour}]"
