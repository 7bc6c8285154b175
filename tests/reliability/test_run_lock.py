"""One run per directory: a second `tunesmith train` on a live run is refused; a killed holder leaves no lock."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.reliability import tally
from tests.reliability.helpers import start, tunesmith, write_config

# A real second process that opens the run directory the way `train` does, then waits to be killed.
HOLD = """
import sys, time
from tunesmith.config import load_config
from tunesmith.train.prepare import open_run_dir
{plant}
open_run_dir(load_config(sys.argv[1]), resume=False)
print("holding", flush=True)
time.sleep(600)
"""
NO_LOCK = "import tunesmith.train.prepare as s; s.lock_run_dir = lambda root: None"  # the planted bug


def hold(config, plant: str = ""):
    proc = start(str(config), script=HOLD.format(plant=plant))
    line = proc.stdout.readline()
    if not line.startswith("holding"):
        proc.kill()
        raise AssertionError(f"the holder did not open the run: {proc.stderr.read()[-3000:]}")
    return proc


@pytest.mark.slow
def test_second_process_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    config = write_config(tmp_path)
    holder = hold(config)
    try:
        second = tunesmith("train", str(config), cwd=tmp_path)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert second.returncode == 2, second.stderr
    message = re.search(r"error: (runs/r) is in use by process (\d+) \(started at ([0-9T:+-]+)\)", second.stderr)
    assert message and int(message.group(2)) == holder.pid, second.stderr
    assert "Traceback" not in second.stderr and not (tmp_path / "runs" / "r" / "metrics.jsonl").exists()
    tally.fault("second train on a live run dir", "refused, exit 2, holder pid named")

    after = tunesmith(
        "train", str(config), "--set", "train.max_steps=1", cwd=tmp_path
    )  # the SIGKILLed holder left no lock
    assert after.returncode == 0, after.stderr
    tally.fault("lock holder SIGKILLed", "no stale lock, next train ran")


@pytest.mark.slow
def test_planted_bug_without_the_lock_the_second_process_gets_in(tmp_path):
    """The check above depends on the lock: with the hook disabled in the holder, nothing refuses the second run."""
    config = write_config(tmp_path)
    holder = hold(config, plant=NO_LOCK)
    try:
        second = tunesmith("train", str(config), "--set", "train.max_steps=1", cwd=tmp_path)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert "is in use by process" not in second.stderr


def test_unfinished_run_is_continued_only_with_resume_and_replaced_only_with_overwrite(tmp_path):
    import json

    from tunesmith.config import load_config
    from tunesmith.errors import ConfigError
    from tunesmith.train.prepare import open_run_dir

    config = load_config(data={"run": {"name": "u", "output_dir": str(tmp_path)}})
    run = open_run_dir(config, resume=False)
    run.config_file.write_text("x")
    run.metrics.write_text(json.dumps({"step": 3, "loss": 1.0}) + "\n")  # crashed before its first checkpoint
    with pytest.raises(ConfigError, match="already holds an unfinished run"):
        open_run_dir(config, resume=False)
    assert open_run_dir(config, resume=True).metrics.exists()  # --resume keeps it
    config.run.overwrite = True
    assert not open_run_dir(config, resume=False).metrics.exists()  # overwrite replaces it
    assert (run.root / ".lock").exists()  # the lock file survives the wipe (this process still holds it)
