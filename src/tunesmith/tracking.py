"""W&B and MLflow: transformers' own integrations log params and per-step metrics; this module checks that
each asked-for tracker can start before any training, remembers which tracker run a training run wrote
to (`runs/<name>/tracking.json`), and logs the run's report.html to that MLflow run once it exists.

A tracker that cannot start (package missing, no W&B key, MLflow server down) stops the run before training
with one message, or is dropped with a warning when `tracking.on_error: continue`.
W&B without an account: `WANDB_MODE=offline` (files under runs/<name>/wandb, `wandb sync` uploads them later).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tunesmith.config.schema import Config
from tunesmith.errors import ConfigError

EXTERNAL = ("wandb", "mlflow")
PROBE_TIMEOUT_S = "5"


def usable_trackers(config: Config, run_root: Path) -> list[str]:
    """The external trackers to hand to transformers: those asked for that can start (see module doc)."""
    usable = []
    for name in (t for t in config.tracking.report_to if t in EXTERNAL):
        problem = _mlflow_problem(config) if name == "mlflow" else _wandb_problem(run_root)
        if problem is None:
            usable.append(name)
        elif config.tracking.on_error == "continue":
            print(f"warning: tracking: {name} cannot start ({problem}); training continues without it", file=sys.stderr)
        else:
            raise ConfigError(
                f"tracking: {name} cannot start: {problem}",
                hint=f"fix that, remove {name} from tracking.report_to, or set tracking.on_error: continue",
            )
    return usable


def _mlflow_problem(config: Config) -> str | None:
    try:
        import mlflow
    except ImportError:
        return "the mlflow package is not installed (pip install 'tunesmith[mlflow]')"
    uri = config.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        os.environ["MLFLOW_TRACKING_URI"] = uri  # transformers' MLflowCallback reads the environment
    _allow_file_store(uri)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=PROBE_TIMEOUT_S)
    try:  # one cheap request: a server that is down answers here, not after the model has loaded
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure means the tracker cannot start
        return f"{uri or 'the default tracking store'}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return None


def _allow_file_store(uri: str | None) -> None:
    if uri and uri.startswith("file:"):
        # MLflow >= 3.7 refuses the file store unless opted in; a file: URI in the config is that opt-in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _wandb_problem(run_root: Path) -> str | None:
    try:
        import wandb
    except ImportError:
        return "the wandb package is not installed (pip install 'tunesmith[wandb]')"
    os.environ.setdefault("WANDB_DIR", str(run_root.resolve()))  # offline files live with the run
    run_root.mkdir(parents=True, exist_ok=True)
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return None
    if os.environ.get("WANDB_API_KEY") or _wandb_logged_in(wandb):
        return None
    return "no W&B API key (set WANDB_API_KEY or run `wandb login`; without an account use WANDB_MODE=offline)"


def _wandb_logged_in(wandb) -> bool:
    try:
        return bool(wandb.Api().api_key)
    except Exception:  # noqa: BLE001 - no key, no netrc, no settings: not logged in
        return False


def record_tracker_runs(run_root: Path, **runs: dict) -> None:
    """Write tracking.json: which tracker run (id, URI or folder) this training run wrote to."""
    path = run_root / "tracking.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    known.update(runs)
    path.write_text(json.dumps(known, indent=2) + "\n", encoding="utf-8")


def log_report(run_root: str | Path, report: Path) -> str | None:
    """Log report.html to the MLflow run this training run wrote to; returns a line saying where, or None."""
    path = Path(run_root) / "tracking.json"
    mlflow_run = json.loads(path.read_text()).get("mlflow") if path.exists() else None
    if not mlflow_run:
        return None
    import mlflow

    uri = mlflow_run["tracking_uri"]
    _allow_file_store(uri)
    try:
        mlflow.MlflowClient(tracking_uri=uri).log_artifact(mlflow_run["run_id"], str(report))
    except Exception as exc:  # noqa: BLE001 - the report exists either way; say why it is not in MLflow
        return (
            f"warning: report not logged to MLflow run {mlflow_run['run_id']} ({uri}): {str(exc).splitlines()[0][:200]}"
        )
    return f"report logged to MLflow run {mlflow_run['run_id']} ({uri})"
