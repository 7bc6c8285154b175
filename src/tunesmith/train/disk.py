"""Disk full (or a file-size limit) while training writes a checkpoint: one clear message, nothing earlier lost.

A checkpoint is written under its temporary name `checkpoint-N/` and only renamed to `step-N/` when complete
(see checkpoint_files.py), and older checkpoints are rotated out only after that rename; so a failed write
leaves every earlier `step-N/` as it was. The half-written folder is removed to give the space back.
"""

from __future__ import annotations

import errno
import shutil

from tunesmith.errors import TrainingError

DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# How libraries word a failed write when they do not raise OSError (torch's zip writer, safetensors' Rust IO).
WRITE_FAILURES = (
    "file write failed",
    "No space left on device",
    "File too large",
    "Disk quota exceeded",
    "os error 28",
    "os error 27",
)


def is_failed_write(exc: BaseException) -> bool:
    """Whether an exception means a write ran out of space (or into the process's file-size limit)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return True
    return any(text in str(exc) for text in WRITE_FAILURES)


def disk_full_error(exc: BaseException, run) -> TrainingError:
    """The user-facing error: what failed, which checkpoint is intact, what to do."""
    for partial in run.checkpoints.glob("checkpoint-*"):
        shutil.rmtree(partial, ignore_errors=True)
    last = run.latest_checkpoint()
    kept = f"the last complete checkpoint, {last}, is intact" if last else "no checkpoint had been completed yet"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
    return TrainingError(
        f"could not write to {run.root}: the disk is full or the file is too large ({reason}); {kept}",
        hint=f"free space (or lower train.save_total_limit), then continue with: tunesmith train {run.config_file} --resume",
    )
