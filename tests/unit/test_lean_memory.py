"""train.lean_memory: freed tensor memory goes back to the OS at once (the peak RSS is the live tensors planned).

A child process first frees one 8 MiB tensor (which raises glibc's dynamic mmap threshold, as the first
training step does), then fills 100 tensors of 2 MiB and frees every other one. With lean memory each tensor
is its own mapping and the freed half leaves the process; with glibc's default (the planted bug: the setting
not applied) the freed half stays in the heap, held between live neighbours.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.test_plan import config_dict
from tunesmith.config.load import load_config
from tunesmith.plan.build import make_plan

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")

FREED_MIB = 100  # 50 of the 2 MiB tensors
RETURNED_MIB = 80  # lean: at least this much leaves the process (absolute)
KEPT_MIB = 20  # default: at most this much leaves (absolute)

CHILD = """
import sys, torch
from tunesmith.plan.measure import return_freed_memory_at_once
if sys.argv[1] == "lean":
    assert return_freed_memory_at_once()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
big = torch.ones(2 * 2**20)
del big  # 8 MiB, freed: glibc's threshold rises above the 2 MiB tensors below
tensors = [torch.ones(2**19) for _ in range(100)]  # 2 MiB each, every page written
before = rss()
del tensors[::2]
print(before - rss())
"""


def returned_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def test_lean_memory_returns_freed_tensors_to_the_os():
    assert returned_mib("lean") >= RETURNED_MIB


def test_without_it_the_heap_keeps_them():  # the planted bug: lean_memory read but not applied
    assert returned_mib("default") <= KEPT_MIB


def test_the_setting_reaches_the_plan_on_cpu_only(tmp_path):
    data = config_dict(tmp_path)
    data["train"]["lean_memory"] = True
    lean = make_plan(load_config(data=data), device="cpu", calibrate_time=False)
    assert lean.setup.lean_memory and not any("glibc" in a for a in lean.assumptions)
    assert not make_plan(load_config(data=data), device="cuda", calibrate_time=False).setup.lean_memory
    default = make_plan(load_config(data=config_dict(tmp_path)), device="cpu", calibrate_time=False)
    assert any("train.lean_memory: true" in a for a in default.assumptions)
