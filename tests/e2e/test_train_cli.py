"""`tunesmith train` as a user runs it: --smoke timing, SIGKILL + --resume, plain transformers+peft loading."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.e2e.test_train_sft import write_chat_data

pytestmark = pytest.mark.slow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TUNESMITH_NO_PROGRESS": "1"}


def write_config(tmp_path: Path, name: str = "t", **train) -> Path:
    data = write_chat_data(tmp_path, n=64)
    settings = dict(
        max_steps=8, batch_size=4, grad_accum=2, learning_rate=3e-3, logging_steps=1, save_steps=2, save_total_limit=2
    )
    settings.update(train)
    raw = {
        "run": {"name": name, "output_dir": str(tmp_path / "runs")},
        "model": {"name_or_path": "tiny:qwen2"},
        "data": {"sources": [{"path": str(data)}], "max_length": 96},
        "train": settings,
        "tracking": {"report_to": ["none"]},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def tunesmith(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tunesmith.cli.main", *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_smoke_runs_the_whole_pipeline_fast(tmp_path):
    config = write_config(tmp_path, max_steps=None, epochs=3)
    start = time.perf_counter()
    out = tunesmith("train", str(config), "--smoke")
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert elapsed < 30
    run = tmp_path / "runs" / "t-smoke"
    assert len(losses(run)) == 3 and (run / "final" / "adapter_model.safetensors").exists()
    assert len((run / "data" / "train.jsonl").read_text().splitlines()) == 10
    assert "tunesmith eval " + str(run) in out.stdout
    assert not (tmp_path / "runs" / "t").exists()


def resume_problems(run: Path, checkpoint_step: int) -> list[str]:
    """What shows a resumed run did not continue from `checkpoint_step` (empty when it did).

    Training is deterministic, so a run that silently restarts from step 1 ends with the same losses and
    weights; only where the resumed process started, and the rows it logged, tell the two apart.
    """
    problems = []
    resumes = json.loads((run / "manifest.json").read_text()).get("resumes") or [{}]
    last = resumes[-1]
    if (
        not str(last.get("from", "")).endswith(f"step-{checkpoint_step}")
        or last.get("checkpoint_step") != checkpoint_step
    ):
        problems.append(f"manifest does not record resuming from step-{checkpoint_step}: {last}")
    if last.get("first_step") != checkpoint_step + 1:
        problems.append(f"the resumed process trained step {last.get('first_step')} first, not {checkpoint_step + 1}")
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    if steps != sorted(set(steps)):
        problems.append(f"metrics.jsonl logs some steps twice: {steps}")
    return problems


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    whole = write_config(tmp_path, name="whole")
    assert tunesmith("train", str(whole)).returncode == 0
    killed = write_config(tmp_path, name="killed")
    run = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli.main", "train", str(killed)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600  # generous: a loaded 2-core CI machine starts slowly
    while not (run / "checkpoints" / "step-4").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "final").exists(), "the run finished before it could be killed"
    resumed = tunesmith("train", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "runs" / "whole"
    assert losses(run) == pytest.approx(losses(reference), abs=1e-6)
    a, b = (
        load_file(reference / "final" / "adapter_model.safetensors"),
        load_file(run / "final" / "adapter_model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-6", "step-8"]
    assert resume_problems(run, checkpoint_step=4) == []


def train_until_planted_crash(config_file: Path, monkeypatch, crash_after_calls: int) -> None:
    """Train until the planted crash: the training loss call after `crash_after_calls` raises (padded and
    padding-free batches alike)."""
    from tunesmith.config import load_config
    from tunesmith.train import sft
    from tunesmith.train.api import train

    original, calls = sft.TokenCountingTrainer.compute_loss, []

    def crash(self, model, inputs, **kwargs):
        calls.append(model.training)
        if sum(calls) > crash_after_calls:
            raise RuntimeError("planted crash")
        return original(self, model, inputs, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(sft.TokenCountingTrainer, "compute_loss", crash)
        with pytest.raises(RuntimeError, match="planted crash"):
            train(load_config(config_file))


def test_restart_instead_of_resume_is_caught(tmp_path, monkeypatch):
    """Plant `--resume` silently restarting from step 1: the losses still match, resume_problems does not."""
    from transformers import Trainer

    from tunesmith.config import load_config
    from tunesmith.train.api import train

    config_file = write_config(tmp_path, name="crash", max_steps=6, save_steps=3)
    train_until_planted_crash(config_file, monkeypatch, crash_after_calls=8)  # grad_accum 2: calls 9-10 are step 5
    run = tmp_path / "runs" / "crash"
    saved = run.parent / "crash-copy"
    shutil.copytree(run, saved)
    train(load_config(config_file), resume=True)
    assert resume_problems(run, checkpoint_step=3) == []

    shutil.rmtree(run)
    shutil.copytree(saved, run)
    real_train = Trainer.train
    monkeypatch.setattr(Trainer, "train", lambda self, resume_from_checkpoint=None, **kw: real_train(self, None, **kw))
    train(load_config(config_file), resume=True)
    assert resume_problems(run, checkpoint_step=3) == [
        "the resumed process trained step 1 first, not 4",
        "metrics.jsonl logs some steps twice: [1, 2, 3, 1, 2, 3, 4, 5, 6]",
    ]


def test_padded_run_resumed_in_its_second_epoch_sees_the_same_batches(tmp_path, monkeypatch):
    """Padded batches are grouped by length in an order seeded by data_seed + epoch (train/sampling.py). A run
    stopped at step 10 and resumed from step 9 (second epoch: about 7 steps of 8 examples each) ends with the
    losses of an uninterrupted run. Planted: a sampler seeded once, whose second epoch follows from the first's
    draws; the resumed process then replays the first epoch's order and the losses part."""
    from tunesmith.config import load_config
    from tunesmith.train.api import train
    from tunesmith.train.sampling import SeededLengthGroupedSampler

    def run_pair(tag: str) -> tuple[list[float], list[float]]:
        settings = dict(batching="padded", max_steps=12, save_steps=9)
        whole = write_config(tmp_path, name=f"whole{tag}", **settings)
        train(load_config(whole))
        stopped = write_config(tmp_path, name=f"stopped{tag}", **settings)
        train_until_planted_crash(stopped, monkeypatch, crash_after_calls=18)  # grad_accum 2: calls 19-20: step 10
        train(load_config(stopped), resume=True)
        assert resume_problems(tmp_path / "runs" / f"stopped{tag}", checkpoint_step=9) == []
        return losses(tmp_path / "runs" / f"whole{tag}"), losses(tmp_path / "runs" / f"stopped{tag}")

    whole, resumed = run_pair("")
    assert len(whole) == 12 and resumed == pytest.approx(whole, abs=1e-6)

    def seeded_once(self):
        if not hasattr(self, "once"):
            self.once = torch.Generator().manual_seed(self.seed)
        from transformers.trainer_pt_utils import get_length_grouped_indices

        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=self.once))

    monkeypatch.setattr(SeededLengthGroupedSampler, "__iter__", seeded_once)
    whole, resumed = run_pair("-planted")
    assert resumed[:9] == pytest.approx(whole[:9], abs=1e-6) and resumed[9:] != pytest.approx(whole[9:], abs=1e-6)


PLAIN_LOAD = """
import sys
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
run = sys.argv[1]
tok = AutoTokenizer.from_pretrained(run + "/final")
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run + "/base_model"), run + "/final")
ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=6, do_sample=False)
assert "tunesmith" not in sys.modules
print(out.shape[1] - ids["input_ids"].shape[1])
"""


def test_final_adapter_loads_with_plain_transformers_and_peft(tmp_path):
    config = write_config(tmp_path, max_steps=4, save_steps=100)
    assert tunesmith("train", str(config)).returncode == 0
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, str(tmp_path / "runs" / "t")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().splitlines()[-1]) >= 1
