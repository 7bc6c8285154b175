"""Tracker checks before training: a tracker that cannot start stops the run, or is dropped when asked."""

from __future__ import annotations

import builtins

import pytest

from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.tracking import log_report, record_tracker_runs, usable_trackers


def config(**tracking):
    return load_config(data={"tracking": tracking})


def without_package(monkeypatch, name: str) -> None:
    real_import = builtins.__import__

    def fake(module, *args, **kwargs):
        if module == name or module.startswith(name + "."):
            raise ImportError(f"No module named '{name}'")
        return real_import(module, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_tensorboard_and_none_need_no_check(tmp_path):
    assert usable_trackers(config(report_to=["tensorboard"]), tmp_path) == []


def test_missing_package_stops_with_the_install_command(tmp_path, monkeypatch):
    without_package(monkeypatch, "mlflow")
    with pytest.raises(ConfigError, match=r"tracking: mlflow cannot start: the mlflow package is not installed") as err:
        usable_trackers(config(report_to=["mlflow"]), tmp_path)
    assert "tunesmith[mlflow]" in str(err.value) and "tracking.on_error: continue" in str(err.value)


def test_on_error_continue_drops_the_tracker_with_a_warning(tmp_path, monkeypatch, capsys):
    without_package(monkeypatch, "wandb")
    assert usable_trackers(config(report_to=["wandb", "tensorboard"], on_error="continue"), tmp_path) == []
    assert "warning: tracking: wandb cannot start" in capsys.readouterr().err


def test_wandb_offline_needs_no_key_and_writes_into_the_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert usable_trackers(config(report_to=["wandb"]), tmp_path / "run") == ["wandb"]
    import os

    assert os.environ["WANDB_DIR"] == str((tmp_path / "run").resolve())
    monkeypatch.setenv("WANDB_MODE", "online")  # the same without offline mode and without a key: refused
    with pytest.raises(ConfigError, match="no W&B API key"):
        usable_trackers(config(report_to=["wandb"]), tmp_path / "run")


def test_mlflow_file_store_is_usable(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    assert usable_trackers(config(report_to=["mlflow"], uri=f"file:{tmp_path / 'mlruns'}"), tmp_path) == ["mlflow"]


def test_report_is_logged_only_for_runs_that_used_mlflow(tmp_path):
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    assert log_report(tmp_path, report) is None
    record_tracker_runs(tmp_path, mlflow={"run_id": "nope", "tracking_uri": f"file:{tmp_path / 'mlruns'}"})
    assert log_report(tmp_path, report).startswith("warning: report not logged to MLflow run nope")
