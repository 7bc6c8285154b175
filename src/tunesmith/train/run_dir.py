"""The run directory: one place that names every file a run writes, so later stages can find them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import TunesmithError


@dataclass(frozen=True)
class RunDir:
    """Paths inside `runs/<name>/`. Training writes them; eval, report and export only read them."""

    root: Path

    @classmethod
    def of(cls, path: str | Path) -> RunDir:
        return cls(Path(path))

    config = property(lambda self: self.root / "config.yaml")
    manifest = property(lambda self: self.root / "manifest.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    checkpoints = property(lambda self: self.root / "checkpoints")
    best = property(lambda self: self.root / "best")
    final = property(lambda self: self.root / "final")
    data = property(lambda self: self.root / "data")
    base_model = property(lambda self: self.root / "base_model")  # a built `tiny:` base lives here
    tensorboard = property(lambda self: self.root / "tensorboard")
    eval = property(lambda self: self.root / "eval")
    export = property(lambda self: self.root / "export")
    report = property(lambda self: self.root / "report.html")

    def split_file(self, split: str) -> Path:
        return self.data / f"{split}.jsonl"

    def require_finished(self) -> None:
        """Raise a clear error when this is not a finished run directory."""
        if not self.config.exists():
            raise TunesmithError(f"{self.root}: not a tunesmith run directory (no config.yaml)", hint="pass runs/<name> written by `tunesmith train`")
        if not self.final.exists():
            raise TunesmithError(f"{self.root}: the run has no final/ model yet", hint=f"finish training first: tunesmith train {self.config}")

    def read_manifest(self) -> dict:
        return json.loads(self.manifest.read_text()) if self.manifest.exists() else {}

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


def is_main_process() -> bool:
    """Whether this process writes the run directory: always, except on ranks > 0 of torchrun / accelerate."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / "config.yaml").is_file()


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
