"""The run directory: one place that names every file a run writes, so later stages can find them.

Training writes `runs/<name>/`; eval, report, export and generate only read it, through `RunDir`:

    config.yaml      the validated config the run trained with      RunDir.config() -> Config
    manifest.json    versions, data fingerprints, device, times, summary   RunDir.read_manifest() -> Manifest
    metrics.jsonl    one row per logged step                         RunDir.read_metrics()
    data/{train,val,test}.jsonl   the processed splits               RunDir.split_file(split)
    checkpoints/step-N/   complete checkpoints                       RunDir.latest_checkpoint()
    best/ final/     the best (lowest val loss) and the last model (adapter or full weights + tokenizer)
    base_model/      a built `tiny:` base;  eval/  export/  report.html  tensorboard/

This module sits at the bottom of the package: it imports only the config schema and errors, so any stage
can read a run without importing the training code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tunesmith.checkpoint_files import newest_intact, print_warning
from tunesmith.config.load import load_config
from tunesmith.config.schema import Config
from tunesmith.errors import TunesmithError


class Manifest(BaseModel):
    """manifest.json: what a run was made from and how it went. Method-specific summaries (e.g. GRPO's
    `rewards`) are kept as extra keys; every field is optional so a manifest written mid-run still reads."""

    model_config = ConfigDict(extra="allow")

    method: str | None = None
    mode: str | None = None
    base_model: str | None = None  # the loadable base path or hub id
    init_from: str | None = None  # the run this one continued (train.init_from)
    trust_remote_code: bool | None = None  # whether model code from the hub was allowed to run
    seed: int | None = None
    device: str | None = None
    precision: str | None = None
    packages: dict[str, str | None] | None = None
    python: str | None = None
    git_commit: str | None = None
    data: dict[str, dict] | None = None  # split -> {"sha256", "rows"}
    start_time: str | None = None
    end_time: str | None = None
    resumes: list[dict] | None = None  # {"time", "from", "checkpoint_step", "first_step"} per --resume
    first_step: int | None = None  # the first step the first process trained (a resume's is in `resumes`)
    steps: int | None = None
    tokens: int | None = None
    train_loss: float | None = None
    best_val_loss: float | None = None
    system_prompt: str | None = None  # the one it trained with: generate, chat, eval, parity and the Modelfile use it
    trainable_parameters: dict | None = None  # {"trainable", "total", "share", "text"}

    def update(self, **values: Any) -> None:
        """Set fields (known or extra) in place."""
        for key, value in values.items():
            setattr(self, key, value)

    def to_json(self) -> str:
        """The file's text: only the keys that were set, in a stable order."""
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2, default=str) + "\n"


@dataclass(frozen=True)
class RunDir:
    """Paths inside `runs/<name>/`. Training writes them; eval, report and export only read them."""

    root: Path

    @classmethod
    def of(cls, path: str | Path) -> RunDir:
        return cls(Path(path))

    config_file = property(lambda self: self.root / "config.yaml")
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

    def config(self) -> Config:
        """The typed config the run trained with (config.yaml, validated like any config file)."""
        self.require_run()
        return load_config(self.config_file)

    def require_run(self) -> None:
        """Raise a clear error when this is not a run directory at all."""
        if not self.config_file.exists():
            raise TunesmithError(
                f"{self.root}: not a tunesmith run directory (no config.yaml)",
                hint="pass runs/<name> written by `tunesmith train`",
            )

    def require_finished(self) -> None:
        """Raise a clear error when this is not a finished run directory."""
        self.require_run()
        if not self.final.exists():
            raise TunesmithError(
                f"{self.root}: the run has no final/ model yet",
                hint=f"finish training first: tunesmith train {self.config_file}",
            )

    def read_manifest(self) -> Manifest:
        """manifest.json, typed (an empty Manifest when the run has none yet)."""
        if not self.manifest.exists():
            return Manifest()
        return Manifest.model_validate(json.loads(self.manifest.read_text(encoding="utf-8")))

    def write_manifest(self, manifest: Manifest) -> None:
        self.manifest.write_text(manifest.to_json(), encoding="utf-8")

    def read_metrics(self) -> list[dict]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

    def latest_checkpoint(self, warn=print_warning) -> Path | None:
        """The newest intact checkpoint (`checkpoints/step-N/`; incomplete ones never get that name).

        A newer one whose files no longer match their checksums (truncated, corrupted) is skipped with a warning.
        """
        steps = [
            p for p in self.checkpoints.glob("step-*") if p.name[5:].isdigit() and (p / "trainer_state.json").exists()
        ]
        return newest_intact(sorted(steps, key=lambda p: int(p.name[5:]), reverse=True), warn)


def is_main_process() -> bool:
    """Whether this process writes the run directory: always, except on ranks > 0 of torchrun / accelerate."""
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
