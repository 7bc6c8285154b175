"""Precision and device rules: fp32 on CPU and Macs (MPS), bf16/fp16 by GPU, refusals that say why."""

from __future__ import annotations

import pytest
import torch

from tunesmith.errors import ConfigError
from tunesmith.model.device import plan_device


def test_cpu_is_fp32():
    assert plan_device("cpu").precision == "fp32"


def test_mac_defaults_are_mps_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    plan = plan_device("auto", "auto")
    assert (plan.device, plan.precision, plan.torch_dtype) == ("mps", "fp32", torch.float32)
    with pytest.raises(ConfigError, match="fp16 is not supported on MPS"):
        plan_device("auto", "fp16")


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_gpu_precision_by_capability(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert plan_device("auto", "auto").precision == expected


def test_cuda_requested_without_gpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        plan_device("cuda")


def test_qlora_on_a_mac_says_what_to_use_instead():
    from tunesmith.config import load_config
    from tunesmith.model.base import load_base_model
    from tunesmith.model.device import DevicePlan

    config = load_config(overrides=["train.mode=qlora"])
    with pytest.raises(ConfigError, match="no 4-bit kernels for Apple's MPS"):
        load_base_model(config, "unused", DevicePlan("mps", "fp32"))
