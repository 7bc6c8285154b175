"""Loads never unpickle: our code has no pickle loads, and resuming reads every checkpoint file with weights_only."""

from __future__ import annotations

import os
import pickle
import re

import pytest

from tests.conftest import REPO
from tests.reliability import tally
from tests.reliability.helpers import tunesmith, write_config
from tunesmith.checkpoint_files import write_checksums

UNSAFE = re.compile(
    r"pickle\.loads?\(|torch\.load\((?![^)]*weights_only=True)|dill\.|joblib\.load|numpy\.load\([^)]*allow_pickle=True"
)


def unsafe_loads(root) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if UNSAFE.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_tunesmith_source_has_no_unpickling_load():
    assert unsafe_loads(REPO / "src") == []


def test_planted_unpickling_load_is_found(tmp_path):
    (tmp_path / "bad.py").write_text(
        "import torch\nstate = torch.load(path)\nok = torch.load(path, weights_only=True)\n"
    )
    assert unsafe_loads(tmp_path) == ["bad.py:2: state = torch.load(path)"]


class Payload:
    """Unpickling this runs os.system: what a hostile checkpoint file would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_a_hostile_pickle_in_a_checkpoint_is_not_run_on_resume(tmp_path):
    config = write_config(tmp_path, max_steps=1)
    assert tunesmith("train", str(config), cwd=tmp_path).returncode == 0
    checkpoint, marker = tmp_path / "runs" / "r" / "checkpoints" / "step-1", tmp_path / "PWNED"
    for name in ("rng_state.pth", "optimizer.pt", "scheduler.pt", "training_args.bin"):
        if (checkpoint / name).exists():
            (checkpoint / name).write_bytes(pickle.dumps(Payload(marker)))
    write_checksums(checkpoint)  # an attacker who can write files can rewrite the checksums too
    resumed = tunesmith("train", str(config), "--resume", "--set", "train.max_steps=2", cwd=tmp_path)
    assert not marker.exists(), "a pickle in the checkpoint was executed"
    assert "internal error" not in resumed.stderr and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    tally.fault("hostile pickle in checkpoint files", f"not executed (resume exit {resumed.returncode})")
