"""Checkpoint integrity: a sha256 of every file, written before a checkpoint gets its final name.

A checkpoint is written as `checkpoints/checkpoint-N/` (the trainer's name), then `checksums.json` is added
and the folder is renamed to `step-N/` in one `os.replace`. A crash mid-write (SIGKILL, disk full) leaves only a
`checkpoint-N/` that resume ignores; a later truncation or bit flip of a `step-N/` file no longer matches its
checksum, and resume falls back to the newest checkpoint that does.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHECKSUMS = "checksums.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> None:
    """Record size and sha256 of every file under `folder`, flushed to disk before the rename that publishes it."""
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in _files(folder)}
    target = folder / CHECKSUMS
    with target.open("w", encoding="utf-8") as f:
        json.dump({"files": files}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def checkpoint_problem(folder: Path) -> str | None:
    """None when every recorded file is present with its size and sha256; else what is wrong (first problem)."""
    try:
        recorded = json.loads((folder / CHECKSUMS).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"no {CHECKSUMS} (written by an interrupted save or another tool)"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"{CHECKSUMS} is unreadable"
    for name, want in sorted(recorded.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size} bytes, {want['bytes']} were written (truncated or changed)"
        if file_sha256(path) != want["sha256"]:
            return f"{name} does not match its checksum (corrupted)"
    return None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def print_warning(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def newest_intact(checkpoints: list[Path], warn=print_warning) -> Path | None:
    """The first intact checkpoint of `checkpoints` (newest first); each damaged one before it gets a warning."""
    skipped = []
    for step in checkpoints:
        problem = checkpoint_problem(step)
        if problem is None:
            for bad, why in skipped:
                warn(f"checkpoint {bad} is damaged ({why}); using the previous good one, {step}")
            return step
        skipped.append((step, problem))
    for bad, why in skipped:
        warn(f"checkpoint {bad} is damaged ({why}); no intact checkpoint is left")
    return None
