"""Secrets from the environment never reach a run directory or the logs: set them, run, grep every byte."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.reliability import tally
from tests.reliability.helpers import ENV, start_cli, tunesmith, write_config

pytestmark = pytest.mark.slow

SECRETS = {
    name: f"sekret-{name.lower()}-7f3a9c"
    for name in (
        "WANDB_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
        "MLFLOW_TRACKING_USERNAME",
        "AWS_SECRET_ACCESS_KEY",
        "OPENAI_API_KEY",
        "MY_SERVICE_SECRET",
        "GITHUB_TOKEN",
    )
}
# Planted leak: the manifest records the whole environment.
LEAK_ENV = """
import os
import tunesmith.train.prepare as setup
_write = setup.write_manifest
setup.write_manifest = lambda ctx, start=False, **extra: _write(ctx, start, environment=dict(os.environ), **extra)
"""


def leaks(folder: Path, logs: str) -> list[str]:
    """'file: NAME' for every secret value found in any file under `folder` or in the logs."""
    found = [f"logs: {name}" for name, value in SECRETS.items() if value in logs]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(folder)}: {name}" for name, value in SECRETS.items() if value.encode() in data]
    return found


def secret_config(tmp_path: Path) -> Path:
    config = write_config(tmp_path, max_steps=2)
    raw = yaml.safe_load(config.read_text())
    raw["tracking"] = {"report_to": ["tensorboard"]}  # TensorBoard writes the training arguments into its event files
    raw["eval"] = {"limit": 2, "max_new_tokens": 4}
    config.write_text(yaml.safe_dump(raw))
    return config


def test_secrets_in_the_environment_are_never_written(tmp_path):
    env = {**ENV, **SECRETS}
    config = secret_config(tmp_path)
    logs = ""
    for argv in (("train", str(config)), ("eval", "runs/r"), ("report", "runs/r")):
        out = tunesmith(*argv, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        logs += out.stdout + out.stderr
    run = tmp_path / "runs" / "r"
    assert (run / "report.html").exists() and (run / "manifest.json").exists() and any((run / "tensorboard").rglob("*"))
    assert leaks(run, logs) == []
    tally.fault(
        f"{len(SECRETS)} secrets set in the environment",
        "none in config.yaml, manifest, metrics, tensorboard, logs, report",
    )


def test_planted_leak_is_found(tmp_path):
    proc = start_cli("train", str(secret_config(tmp_path)), cwd=tmp_path, patch=LEAK_ENV, env={**ENV, **SECRETS})
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    found = leaks(tmp_path / "runs" / "r", out + err)
    assert "manifest.json: WANDB_API_KEY" in found and "manifest.json: HF_TOKEN" in found, found
