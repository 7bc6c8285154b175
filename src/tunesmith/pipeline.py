"""A config's whole journey in one call: data check -> train -> eval -> report -> export.

Each step is the same library function its own command calls; this module only orders them and collects
what a person wants to see at the end (metric before and after, where the report and the GGUF are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.load import load_config
from tunesmith.config.schema import Config
from tunesmith.config.smoke import smoke as smoke_config
from tunesmith.data.check import check_config
from tunesmith.errors import DataError
from tunesmith.eval.evaluate import eval_split, evaluate
from tunesmith.export.export_run import export_run
from tunesmith.report.build import build_report
from tunesmith.run_dir import RunDir
from tunesmith.tracking import log_report
from tunesmith.train.api import train


@dataclass
class PipelineResult:
    run_dir: Path
    metrics: dict = field(default_factory=dict)
    report: Path | None = None
    export: object | None = None
    skipped: list[str] = field(default_factory=list)


def run_pipeline(
    config_path: str | Path, overrides: list[str] | None = None, smoke: bool = False, export: bool = True, echo=print
) -> PipelineResult:
    """Run every stage a config asks for, stopping at the first stage that fails."""
    config = load_config(config_path, overrides)
    if smoke:
        config = smoke_config(config)
    clock = _Clock(echo)
    clock.stage(f"[1/5] data check: {config_path}")
    _check_data(config, config_path, echo)
    clock.stage("[2/5] train")
    outcome = PipelineResult(Path(train(config).run_dir))
    clock.stage("[3/5] eval: base vs tuned on the test split")
    outcome.metrics = _evaluate(outcome, echo)
    clock.stage("[4/5] report")
    outcome.report = build_report(outcome.run_dir)
    log_report(outcome.run_dir, outcome.report)  # to the run's MLflow run, when it has one
    if export and (config.export.gguf or config.export.merged):
        clock.stage("[5/5] export: merge, GGUF, Modelfile, parity check")
        outcome.export = _export(outcome.run_dir, outcome)
    else:
        outcome.skipped.append("export (turned off)")
    clock.stage(None)
    return outcome


def _evaluate(outcome: PipelineResult, echo) -> dict:
    """Eval on the test split, else the validation split (saying so), else skipped with one line."""
    if eval_split(RunDir.of(outcome.run_dir)) is None:
        note = "eval (the run kept no test or validation rows)"
        echo(f"  skipped: {note}")
        outcome.skipped.append(note)
        return {}
    metrics = evaluate(outcome.run_dir)
    if metrics.get("note"):
        echo(f"  {metrics['note']}")
    return metrics


class _Clock:
    """Prints each stage's name, and the time the previous one took."""

    def __init__(self, echo):
        self.echo, self.started, self.name = echo, None, None

    def stage(self, name: str | None) -> None:
        import time

        now = time.perf_counter()
        if self.started is not None:
            self.echo(f"      ({now - self.started:.0f} s)")
        self.started, self.name = now, name
        if name:
            self.echo(name)


def _check_data(config: Config, config_path, echo) -> None:
    """Stop before training on real problems; duplicates only warn when data.clean.dedup drops them anyway."""
    report = check_config(config)
    blocking = [p for p in report.problems if not (p.kind == "duplicate" and config.data.clean.dedup)]
    for problem in blocking[:20]:
        echo(f"  {problem}")
    if blocking:
        raise DataError(
            f"data check found problems in the training data: {report.summary()}",
            hint=f"run `tunesmith data check {config_path}` for the full list, fix the rows, then rerun",
        )
    duplicates = report.counts.get("duplicate", 0)
    note = f" ({duplicates} exact duplicates will be dropped by data.clean.dedup)" if duplicates else ""
    echo(f"  ok: {report.rows} rows in {report.files} file(s){note}")
    for line in report.notes():
        echo(f"  {line}")


def _export(run_dir: Path, outcome: PipelineResult):
    """Export with the config's settings; without the optional llama.cpp extra, merge only and say so."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        outcome.skipped.append('GGUF + parity (llama-cpp-python missing: pip install -e ".[export]")')
        return export_run(run_dir, gguf_types=[])
    return export_run(run_dir)


def print_summary(result: PipelineResult, echo=print) -> None:
    """The few lines a person wants at the end: each metric before -> after, and where everything is."""
    echo("")
    echo(f"run directory: {result.run_dir}")
    for name, row in (result.metrics or {}).get("metrics", {}).items():
        before, after = row.get("base"), row.get("tuned")
        if after is None:
            continue
        change = f"{_fmt(before)} -> {_fmt(after)}" if before is not None else _fmt(after)
        echo(f"  {name:<28} {change}")
    if result.report:
        echo(f"report: {result.report}")
    export = result.export
    if export is not None:
        for gguf_type, path in getattr(export, "gguf_files", {}).items():
            report = getattr(export, "parity", {}).get(gguf_type)
            proof = (
                f" (parity with HF: {report.verdict}, {report.measured['greedy_match_rate']:.0%} of prompts identical)"
                if report
                else ""
            )
            echo(f"gguf {gguf_type}: {path}{proof}")
        for command in getattr(export, "ollama_commands", []):
            echo(f"  {command}")
    for note in result.skipped:
        echo(f"skipped: {note}")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
