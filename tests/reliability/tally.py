"""What the reliability tests tried, printed as one line at the end of the session (conftest.py)."""

from __future__ import annotations

inputs = {"tried": 0, "internal_errors": 0}
faults: list[tuple[str, str]] = []  # (fault injected, outcome seen)


def fault(name: str, outcome: str) -> None:
    faults.append((name, outcome))


def summary() -> str:
    parts = [f"{name} -> {outcome}" for name, outcome in faults]
    return (
        f"reliability: {inputs['tried']} inputs tried, {inputs['internal_errors']} internal errors; "
        f"{len(faults)} faults injected: " + "; ".join(parts)
    )
