"""A training subprocess's peak memory is its own, not its parent's (Linux carries ru_maxrss across exec)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from tunesmith.peak_memory import peak_rss_bytes

PARENT_MIB = 400
CHILD_BOUND_MIB = 150  # a bare Python with tunesmith.peak_memory imported holds ~15 MiB; absolute bound

CHILD = "from tunesmith.peak_memory import peak_rss_bytes; print(peak_rss_bytes())"
PLANTED = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"


def _child_reports(code: str) -> float:
    ballast = bytearray(PARENT_MIB * 2**20)  # zero-filled: every page touched, resident in the parent
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    finally:
        del ballast
    return float(out.stdout.strip()) / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inheritance is Linux's")
def test_child_peak_excludes_the_parents_memory():
    assert _child_reports(CHILD) < CHILD_BOUND_MIB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inheritance is Linux's")
def test_the_planted_ru_maxrss_reading_is_caught():
    # What tunesmith measured before: the child's ru_maxrss starts at the parent's peak.
    assert _child_reports(PLANTED) >= PARENT_MIB


def test_falls_back_to_ru_maxrss_without_proc(tmp_path):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    expected = rss if sys.platform == "darwin" else rss * 1024
    assert peak_rss_bytes(tmp_path / "no-such-status") >= expected
