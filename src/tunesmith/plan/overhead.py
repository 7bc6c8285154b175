"""Framework overhead: memory a training process holds before any model state, measured once and cached.

On a CPU the libraries a training run imports (torch, transformers, peft, trl, datasets, accelerate) and
their thread pools take hundreds of MiB of RSS, often more than a small model. A fresh subprocess imports
them, builds a Trainer-sized workload's bookkeeping (tokenizer, datasets), and reports its peak RSS; the
result is cached per package versions under $TUNESMITH_CACHE/plan/. On a GPU the device overhead is the
CUDA context and the allocator's cache (a documented constant, see docs/plan.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CUDA_CONTEXT_BYTES = 0.5 * 2**30  # CUDA context + cuBLAS workspace, typical for torch 2.x on one GPU
MPS_OVERHEAD_BYTES = 0.3 * 2**30
PROBE = """
from tunesmith.peak_memory import peak_rss_bytes
import torch, transformers, peft, trl, datasets, accelerate
from transformers import Trainer, TrainingArguments
from peft import get_peft_model
import tunesmith.train.sft, tunesmith.data.tokenize
torch.ones(1, requires_grad=True).sum().backward()  # start autograd's engine and thread pool
print(peak_rss_bytes())
"""


def cache_dir() -> Path:
    root = os.environ.get("TUNESMITH_CACHE") or Path.home() / ".cache" / "tunesmith"
    return Path(root) / "plan"


def framework_overhead(device: str, method: str = "sft") -> tuple[float, str]:
    """(bytes, how it was obtained) of the framework's own memory on `device` for a run of `method`."""
    if device == "cuda":
        return CUDA_CONTEXT_BYTES, "CUDA context and cuBLAS workspace (constant)"
    host = import_rss(method)
    if device == "mps":  # unified memory: the process and the GPU share it
        return host + MPS_OVERHEAD_BYTES, "process RSS of the libraries (measured) + Metal context (constant)"
    return host, "RSS of this process with the training libraries imported (measured now)"


def import_rss(method: str = "sft") -> float:
    """RSS of this process with the training libraries and the method's trainer imported (imports a training
    run makes anyway: GRPO's TRL trainer alone adds about 50 MiB)."""
    import importlib

    import psutil

    from tunesmith.train.api import METHODS

    exec(PROBE.split("torch.ones")[0], {})  # the probe's imports, in this process
    if method in METHODS:
        importlib.import_module(METHODS[method].partition(":")[0])
    return float(psutil.Process().memory_info().rss)


def cpu_import_rss() -> float:
    """Peak RSS of a fresh process that imported the training libraries (cached per package versions)."""
    from tunesmith.train.prepare import package_versions

    key = json.dumps({"probe": "VmHWM", **package_versions()}, sort_keys=True)
    path = cache_dir() / "overhead.json"
    cached = _read(path)
    if cached.get("key") == key:
        return float(cached["rss_bytes"])
    rss = _measure()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "rss_bytes": rss}), encoding="utf-8")
    return rss


def _measure() -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"measuring the framework overhead failed: {out.stderr.strip()[-500:]}")
    return float(out.stdout.strip().splitlines()[-1])


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
