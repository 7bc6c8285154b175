"""What a training run returns (SFT and GRPO alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainResult:
    run_dir: Path
    final_dir: Path
    steps: int  # optimizer steps completed (global step)
    train_loss: float | None  # mean training loss of the last logging window
    best_val_loss: float | None
    tokens: int  # real (non-pad) tokens trained on, all sessions of the run
    seconds: float  # wall time of this call
    best_dir: Path | None = None
    train_seconds: float | None = None  # inside trainer.train() only (no loading, tokenizing or saving)
    stopped_early: bool = False
    model: Any = field(default=None, repr=False)  # the trained model, still in memory (API callers, tests)

    def summary(self) -> str:
        """A few lines for the terminal: numbers, paths and the next commands."""
        loss = f"{self.train_loss:.4f}" if self.train_loss is not None else "n/a"
        val = f"{self.best_val_loss:.4f}" if self.best_val_loss is not None else "n/a (no validation split)"
        lines = [
            f"trained {self.steps} steps in {self.seconds:.1f} s on {self.tokens:,} tokens"
            + (" (stopped early: validation loss stopped improving)" if self.stopped_early else ""),
            f"  train loss {loss} | best val loss {val}",
            f"  run:   {self.run_dir}",
            f"  final: {self.final_dir}" + (f"   best: {self.best_dir}" if self.best_dir else ""),
            "next:",
            f"  tunesmith eval {self.run_dir}",
            f"  tunesmith report {self.run_dir}",
            f"  tunesmith export {self.run_dir}",
        ]
        return "\n".join(lines)
