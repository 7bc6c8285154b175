"""grpo.use_vllm: TRL's colocated vLLM generation where it can run, one clear message where it cannot."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml
from trl import GRPOConfig

from tunesmith.cli.main import main
from tunesmith.config.schema import GRPOConfig as GRPOSection
from tunesmith.errors import ConfigError
from tunesmith.train.grpo import check_vllm, vllm_kwargs


def test_off_by_default_and_then_nothing_reaches_trl():
    section = GRPOSection()
    assert section.use_vllm is False and vllm_kwargs(section) == {}
    check_vllm(section, "cpu")  # no requirement when off


def test_on_maps_to_trls_colocate_mode_and_trl_accepts_it(tmp_path):
    section = GRPOSection(use_vllm=True, vllm_gpu_memory_utilization=0.45)
    kwargs = vllm_kwargs(section)
    assert kwargs == {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.45}
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, num_generations=2, per_device_train_batch_size=2, **kwargs
    )
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization) == (True, "colocate", 0.45)


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_refused_off_cuda(device):
    with pytest.raises(ConfigError, match=f"grpo.use_vllm: vLLM generates on CUDA GPUs only; this run is on {device}"):
        check_vllm(GRPOSection(use_vllm=True), device)


def test_refused_without_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(ConfigError, match="the vllm package is not installed"):
        check_vllm(GRPOSection(use_vllm=True), "cuda")


def test_accepted_on_cuda_with_the_package(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    check_vllm(GRPOSection(use_vllm=True), "cuda")


def test_config_check_on_cpu_exits_2_with_one_message(tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(20))
    )
    config = {
        "model": {"name_or_path": "tiny:qwen2"},
        "data": {"sources": [{"path": str(prompts)}]},
        "method": "grpo",
        "train": {"device": "cpu", "batch_size": 4},
        "grpo": {"num_generations": 4, "use_vllm": True, "rewards": [{"name": "numeric_match"}]},
    }
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["config", "check", str(path)])
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert code == 2
    assert "grpo.use_vllm: vLLM generates on CUDA GPUs only; this run is on cpu" in err and "Traceback" not in err
