"""Measured peak memory and seconds per step of a training run, written to manifest.json under `measured`.

Peak memory: the process's peak RSS on a CPU (what the plan predicts there), the allocator's peak reserved
memory on CUDA. Seconds per step: the mean wall time of optimizer steps, the first one left out (it pays
one-off costs: kernel selection, lazy initialisation, optimizer state allocation); with
TUNESMITH_PLAN_CLOCK=cpu the process's CPU time instead (plan/probe.py clock), as the plan's probes then use.
"""

from __future__ import annotations

import os
import sys

from transformers import TrainerCallback

from tunesmith.peak_memory import peak_rss_bytes
from tunesmith.plan.probe import CLOCK_ENV, clock

MMAP_THRESHOLD = 1024 * 1024  # bytes; allocations from this size get their own pages, returned when freed
M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)


def return_freed_memory_at_once() -> bool:
    """Make glibc give freed tensor memory back to the OS at once (Linux; train.lean_memory on a CPU).

    glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which activation-
    sized tensors come from the heap, where freed memory stays with the process for reuse: the peak RSS of a
    108M LoRA run at 1,024 tokens was 4,442 MiB with glibc's default and 2,918 MiB with a fixed 1 MiB
    threshold, against 2,688 MiB of live tensors planned. A fixed threshold makes the peak the live tensors,
    which is what `tunesmith plan` predicts, at a price: every tensor above the threshold is a fresh mapping
    whose pages fault in when written: steps ran 1.1-1.7x slower (docs/plan.md), hence off by default.
    Returns whether it took effect.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False


def peak_memory(device: str) -> float:
    """Bytes: CUDA's peak reserved memory, else the process's peak resident set."""
    if device == "cuda":
        import torch

        return float(torch.cuda.max_memory_reserved())
    return float(peak_rss_bytes())


class MeasureCallback(TrainerCallback):
    """Times every optimizer step and records the peak memory when training ends."""

    def __init__(self, run, device: str):
        self.run = run
        self.device = device
        self.started = 0.0
        self.steps: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = clock()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(clock() - self.started)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        import torch

        timed = self.steps[1:] or self.steps
        measured = {
            "peak_memory": peak_memory(self.device),
            "peak_memory_kind": "max_memory_reserved" if self.device == "cuda" else "process peak RSS",
            "seconds_per_step": sum(timed) / len(timed) if timed else None,
            "steps_timed": len(timed),
            "threads": torch.get_num_threads(),  # the plan's calibration records its own (plan.json)
            "clock": os.environ.get(CLOCK_ENV, "wall"),
        }
        manifest = self.run.read_manifest()
        manifest.update(measured=measured)
        self.run.write_manifest(manifest)
