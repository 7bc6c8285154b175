"""A config's whole journey in one call: data check -> train -> eval -> report -> export.

Each step is the same library function its own command calls; this module only orders them and collects
what a person wants to see at the end (metric before and after, where the report and the GGUF are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import DataError


@dataclass
class PipelineResult:
    run_dir: Path
    metrics: dict = field(default_factory=dict)
    report: Path | None = None
    export: object | None = None
    skipped: list[str] = field(default_factory=list)


def run_pipeline(config_path: str | Path, overrides: list[str] | None = None, smoke: bool = False, export: bool = True, echo=print) -> PipelineResult:
    """Run every stage a config asks for, stopping at the first stage that fails."""
    from tunesmith.config import load_config

    config = load_config(config_path, overrides)
    echo(f"[1/5] data check: {config_path}")
    _check_data(config_path, overrides, echo)
    echo("[2/5] train")
    from tunesmith.train.api import train

    result = train(config_path, overrides=overrides, smoke=smoke)
    run_dir = Path(result.run_dir)
    outcome = PipelineResult(run_dir)
    echo("[3/5] eval: base vs tuned on the test split")
    from tunesmith.eval.run import evaluate

    outcome.metrics = evaluate(run_dir, limit=(3 if smoke else None))
    echo("[4/5] report")
    from tunesmith.report.build import build_report

    outcome.report = build_report(run_dir)
    if export and (config.export.gguf or config.export.merged):
        echo("[5/5] export: merge, GGUF, Modelfile, parity check")
        outcome.export = _export(run_dir, outcome)
    else:
        outcome.skipped.append("export (turned off)")
    return outcome


def _check_data(config_path, overrides, echo) -> None:
    from tunesmith.data.check import check_config

    report = check_config(config_path, overrides)
    for problem in report.problems[:20]:
        echo(f"  {problem}")
    if report.problems:
        raise DataError(
            f"data check found {len(report.problems)} problem(s) in the training data",
            hint=f"run `tunesmith data check {config_path}` for the full list, fix the rows, then rerun",
        )
    echo(f"  ok: {report.summary()}")


def _export(run_dir: Path, outcome: PipelineResult):
    from tunesmith.export.run import export_run

    try:
        return export_run(run_dir)
    except ImportError as exc:  # the llama.cpp extra is optional
        outcome.skipped.append(f"export ({exc})")
        return None
