"""Device and precision choices: bf16 where the GPU has it, fp16 on older GPUs, fp32 on CPU and MPS."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.errors import ConfigError


@dataclass(frozen=True)
class DevicePlan:
    device: str  # cuda | mps | cpu
    precision: str  # bf16 | fp16 | fp32

    @property
    def torch_dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[self.precision]


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def plan_device(device: str = "auto", precision: str = "auto") -> DevicePlan:
    """Resolve `train.device` / `train.precision`; invalid pairs raise a ConfigError."""
    import torch

    dev = pick_device(device)
    if dev == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA GPU is visible", hint="set train.device: auto")
    if precision == "auto":
        if dev == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if dev == "mps" and precision == "fp16":
        raise ConfigError("train.precision fp16 is not supported on MPS", hint="use fp32 (the default on Macs)")
    if dev == "cpu" and precision == "fp16":
        raise ConfigError("train.precision fp16 needs a GPU", hint="use fp32 on CPU")
    return DevicePlan(dev, precision)
