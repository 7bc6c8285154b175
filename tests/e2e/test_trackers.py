"""Trackers for real, without an account: MLflow with a local file store and W&B in offline mode, end to end;
a tracker that cannot start stops the run before training, or is dropped when tracking.on_error: continue."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.data.synth import write_intent_dataset
from tunesmith.run_dir import RunDir

pytestmark = pytest.mark.slow
SRC = Path(__file__).resolve().parents[2] / "src"


def write_config(tmp_path: Path, tracking: str) -> Path:
    data = tmp_path / "d.jsonl"
    write_intent_dataset(data, rows=60, seed=0)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"run: {{name: tracked, output_dir: {tmp_path / 'runs'}}}\nmodel: {{name_or_path: 'tiny:qwen2'}}\n"
        f"data: {{sources: [{{path: {data}}}], max_length: 96}}\n"
        "train: {mode: lora, max_steps: 4, batch_size: 4, grad_accum: 1, logging_steps: 1, save_steps: 100, device: cpu}\n"
        "eval: {max_new_tokens: 4, limit: 2, compare_base: false}\n"
        f"tracking: {tracking}\n"
    )
    return config


def tunesmith(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    environ.update(PYTHONPATH=str(SRC), TUNESMITH_NO_PROGRESS="1", HOME=str(cwd), **env)  # HOME: no ~/.netrc key
    return subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=environ,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def test_mlflow_file_store_gets_params_metrics_per_step_and_the_report(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 reads a file store only when allowed

    store = f"file:{tmp_path / 'mlruns'}"
    config = write_config(tmp_path, f"{{report_to: [mlflow], uri: '{store}', project: tunesmith-test}}")
    done = tunesmith("train", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    run = RunDir.of(tmp_path / "runs" / "tracked")
    recorded = json.loads((run.root / "tracking.json").read_text())["mlflow"]
    report = tunesmith("report", str(run.root), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert f"report logged to MLflow run {recorded['run_id']}" in report.stdout

    client = MlflowClient(tracking_uri=store)
    logged = client.get_run(recorded["run_id"])
    assert client.get_experiment(logged.info.experiment_id).name == "tunesmith-test"
    assert (
        logged.data.params["tunesmith.train.mode"] == "lora" and logged.data.params["tunesmith.train.max_steps"] == "4"
    )
    losses = client.get_metric_history(recorded["run_id"], "loss")
    ours = [r["loss"] for r in run.read_metrics() if "loss" in r]
    assert [m.step for m in losses] == [1, 2, 3, 4]
    assert [m.value for m in losses] == pytest.approx(ours, abs=1e-6)  # the same numbers as metrics.jsonl
    assert "report.html" in [a.path for a in client.list_artifacts(recorded["run_id"])]


def test_wandb_offline_writes_the_run_with_the_run_directory(tmp_path):
    config = write_config(tmp_path, "{report_to: [wandb], project: tunesmith-test}")
    done = tunesmith("train", str(config), cwd=tmp_path, WANDB_MODE="offline")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    run = RunDir.of(tmp_path / "runs" / "tracked")
    recorded = json.loads((run.root / "tracking.json").read_text())["wandb"]
    assert recorded["mode"] == "offline"
    offline = list((run.root / "wandb").glob(f"offline-run-*-{recorded['run_id']}"))
    assert len(offline) == 1, list((run.root / "wandb").iterdir())
    history = [row for row in wandb_history(next(offline[0].glob("run-*.wandb"))) if "train/loss" in row]
    assert [row["train/global_step"] for row in history] == [1, 2, 3, 4]
    ours = [r["loss"] for r in run.read_metrics() if "loss" in r]
    assert [row["train/loss"] for row in history] == pytest.approx(ours, abs=1e-6)  # metrics.jsonl's numbers


def wandb_history(path: Path) -> list[dict]:
    """The history rows of an offline W&B run file.

    wandb 0.31 ships no reader for its .wandb files (the Go core writes them): they are a LevelDB-style log,
    a 7-byte file header, then 32 KiB blocks of records [crc32 u32][length u16][type u8][payload] where type
    1 = whole record, 2/3/4 = first/middle/last piece; each record is a protobuf `Record` of wandb's own schema.
    """
    from wandb.proto import wandb_internal_pb2

    data, pos, pieces, rows = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # block trailer too short for a header: skip to the next block
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pieces += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_tracker_that_cannot_start_stops_the_run_before_training(tmp_path):
    config = write_config(tmp_path, f"{{report_to: [mlflow], uri: 'http://127.0.0.1:{closed_port()}'}}")
    done = tunesmith("train", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert (
        "tracking: mlflow cannot start: http://127.0.0.1" in done.stderr
        and "tracking.on_error: continue" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not RunDir.of(tmp_path / "runs" / "tracked").metrics.exists()  # no step was trained


def test_wandb_without_a_key_stops_and_names_offline_mode(tmp_path):
    config = write_config(tmp_path, "{report_to: [wandb]}")
    done = tunesmith("train", str(config), cwd=tmp_path)
    assert done.returncode == 2
    assert "tracking: wandb cannot start: no W&B API key" in done.stderr and "WANDB_MODE=offline" in done.stderr


def test_on_error_continue_trains_without_the_tracker(tmp_path):
    config = write_config(
        tmp_path, f"{{report_to: [mlflow], uri: 'http://127.0.0.1:{closed_port()}', on_error: continue}}"
    )
    done = tunesmith("train", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning: tracking: mlflow cannot start" in done.stderr and "continues without it" in done.stderr
    run = RunDir.of(tmp_path / "runs" / "tracked")
    assert len([r for r in run.read_metrics() if "loss" in r]) == 4 and not (run.root / "tracking.json").exists()
