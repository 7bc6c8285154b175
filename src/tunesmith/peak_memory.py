"""This process's peak resident memory, read so that a parent's footprint does not leak into it.

Linux carries `ru_maxrss` across fork and exec: a training subprocess started by a 800 MiB test runner (or
notebook) reports at least 800 MiB whatever it did itself. The kernel's per-address-space high-water mark,
`VmHWM` in /proc/self/status, starts fresh at exec and is the figure used where it exists; macOS and other
systems fall back to `ru_maxrss` (bytes on macOS, KiB elsewhere).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

STATUS = Path("/proc/self/status")


def peak_rss_bytes(status: Path = STATUS) -> int:
    """Peak resident set size of this process's own address space, in bytes."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # the kernel writes "VmHWM:  123456 kB"
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def peak_rss_mib() -> float:
    """peak_rss_bytes in MiB, one decimal."""
    return round(peak_rss_bytes() / 2**20, 1)
