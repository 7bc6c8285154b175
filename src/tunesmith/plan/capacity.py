"""How much memory the device offers: available RAM (CPU), free GPU memory (CUDA), unified memory (MPS)."""

from __future__ import annotations

import os


def device_capacity(device: str) -> tuple[float, str]:
    """(bytes, where the number comes from)."""
    if device == "cuda":
        import torch

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return float(free), "free GPU memory (torch.cuda.mem_get_info)"
        return 0.0, "no CUDA GPU here: pass --memory (e.g. --memory 24GB) to plan for one"
    if device == "mps":
        import torch

        recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        if recommended is not None:
            try:
                return float(recommended()), "Metal's recommended working set of the unified memory"
            except RuntimeError:
                pass
        return total_ram() * 0.75, "three quarters of the unified memory"
    return available_ram(), "available RAM (MemAvailable)"


def available_ram() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return total_ram()


def total_ram() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0.0


def parse_size(text: str) -> float:
    """'24GB', '24G', '24GiB', '512MB', '1.5T' -> bytes (GB and GiB both mean 2**30: what tools report)."""
    from tunesmith.errors import ConfigError

    units = {"t": 2**40, "g": 2**30, "m": 2**20, "k": 2**10, "": 1}
    raw = text.strip().lower().replace("ib", "").replace("b", "")
    number = raw.rstrip("tgmk")
    unit = raw[len(number) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise ConfigError(f"--memory {text}: not a size", hint="write it like 24GB, 16GiB or 512MB") from None
    if value <= 0:
        raise ConfigError(f"--memory {text}: must be more than 0")
    return value
