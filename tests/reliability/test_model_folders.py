"""Incomplete or damaged model folders, and model code that may only run with model.trust_remote_code: true."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.reliability import tally
from tests.reliability.mutations import valid_config, valid_files
from tests.reliability.test_fuzz import assert_user_facing, run_main

pytestmark = pytest.mark.slow

# transformers copies model code into its modules cache before importing it: the marker path is absolute
EVIL = """
from pathlib import Path
Path({marker!r}).write_text("remote code ran")
from transformers import Qwen2Config, Qwen2ForCausalLM
class EvilConfig(Qwen2Config):
    model_type = "qwen2"
class EvilModel(Qwen2ForCausalLM):
    config_class = EvilConfig
"""


def smoke(tmp_path, model, name: str) -> tuple[int, str, tuple]:
    data = tmp_path / "rows.jsonl"
    data.write_bytes(valid_files()[".jsonl"])
    raw = valid_config(data, str(model), tmp_path / "runs")
    raw["run"]["name"] = name
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(raw))
    argv = ("train", str(config), "--smoke")
    return (*run_main(*argv), argv)


def test_incomplete_and_damaged_model_folders_get_user_errors(tmp_path, tiny_qwen2, monkeypatch):
    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    files = sorted(p.name for p in tiny_qwen2.iterdir() if p.is_file())
    outcomes = []
    for name in files:
        for damage in ("deleted", "truncated"):
            folder = tmp_path / f"{name}-{damage}"
            shutil.copytree(tiny_qwen2, folder)
            target = folder / name
            if damage == "deleted":
                target.unlink()
            else:
                target.write_bytes(target.read_bytes()[: max(1, target.stat().st_size // 3)])
            code, output, argv = smoke(tmp_path, folder, f"m{len(outcomes)}")
            assert_user_facing(code, output, argv)
            outcomes.append(code)
    assert any(code == 2 for code in outcomes)  # weights, config and tokenizer damage are refused, not ignored
    tally.fault(
        f"{len(outcomes)} damaged model folders (each file deleted / truncated)",
        f"{outcomes.count(2)} refused with a message, {outcomes.count(0)} still trainable, no internal error",
    )


def remote_code_folder(tmp_path, tiny_qwen2):
    folder = tmp_path / "remote-model"
    shutil.copytree(tiny_qwen2, folder)
    (folder / "evil.py").write_text(EVIL.format(marker=str(folder / "EXECUTED")))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_model_code_runs_only_with_trust_remote_code(tmp_path, tiny_qwen2, monkeypatch):
    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    folder = remote_code_folder(tmp_path, tiny_qwen2)
    code, output, argv = smoke(tmp_path, folder, "untrusted")
    assert_user_facing(code, output, argv)
    assert not (folder / "EXECUTED").exists(), "model code ran without model.trust_remote_code"
    manifest = tmp_path / "runs" / "untrusted-smoke" / "manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["trust_remote_code"] is False
    tally.fault("model folder with its own code, trust_remote_code unset", "code not run")


def test_trusted_remote_code_runs_and_is_recorded(tmp_path, tiny_qwen2, monkeypatch):
    """The counterpart (and the planted case for the check above): with trust it does run, and the manifest says so."""
    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")
    folder = remote_code_folder(tmp_path, tiny_qwen2)
    data = tmp_path / "rows.jsonl"
    data.write_bytes(valid_files()[".jsonl"])
    raw = valid_config(data, str(folder), tmp_path / "runs")
    raw["model"]["trust_remote_code"] = True
    config = tmp_path / "trusted.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, output = run_main("train", str(config), "--smoke")
    assert (folder / "EXECUTED").exists(), output
    assert json.loads((tmp_path / "runs" / "fuzz-smoke" / "manifest.json").read_text())["trust_remote_code"] is True
