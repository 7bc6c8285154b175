"""One training process per run directory: an OS file lock on `<run>/.lock`.

The lock is `fcntl.flock` on an open file, so the operating system drops it when the holder exits, however it
exits (crash, SIGKILL, power loss of the process): there is never a stale lock to clean up by hand. The file
holds the holder's pid and start time only so that a second process can say who holds it.

    lock = lock_run_dir(run.root)   # raises RunDirInUse (exit 2) when another process holds it
    ...                             # the lock lives as long as this process (or until lock.release())
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from tunesmith.errors import TunesmithError

LOCK_NAME = ".lock"
_held: dict[Path, "RunLock"] = {}  # run dirs this process holds; a second open in-process reuses the lock


class RunDirInUse(TunesmithError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """An acquired lock; keep it referenced (the module does) until the run ends."""

    def __init__(self, root: Path, fd: int):
        self.root = root
        self.fd = fd

    def release(self) -> None:
        import fcntl

        if self.fd < 0:
            return
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1
        _held.pop(self.root, None)


def lock_run_dir(root: str | Path) -> RunLock | None:
    """Take the run directory's lock for this process, creating the directory; None where flock does not exist."""
    root = Path(root).resolve()
    if root in _held:
        return _held[root]
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs are not guarded there
        return None
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        hint = "wait for it to finish, stop it, or pick another run.name"
        raise RunDirInUse(_in_use_message(root, holder), hint=hint) from None
    _write_holder(fd)
    lock = _held[root] = RunLock(root, fd)
    return lock


def release_all() -> None:
    """Release every lock this process holds (tests; a process exit releases them anyway)."""
    for lock in list(_held.values()):
        lock.release()


def _write_holder(fd: int) -> None:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    data = json.dumps({"pid": os.getpid(), "started": started}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        return {}


def _in_use_message(root: Path, holder: dict) -> str:
    shown = _shown(root)
    if not holder.get("pid"):
        return f"{shown} is in use by another process"
    return f"{shown} is in use by process {holder['pid']} (started at {holder.get('started', 'an unknown time')})"


def _shown(root: Path) -> str:
    """The path as the user would type it: relative to the working directory where it is under it."""
    try:
        return str(root.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(root)
