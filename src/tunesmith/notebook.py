"""`tunesmith.Run`: a small object over the same functions the commands call, for notebooks.

run = tunesmith.Run.train("config.yaml")      # or tunesmith.Run("runs/x") for a finished run
run.evaluate(); run.generate("wake me at 7"); run.export(gguf=["q4_k_m"]); run.metrics
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.run_dir import RunDir


class Run:
    """A run directory; every method reads it as the matching command does."""

    def __init__(self, run_dir: str | Path):
        self.dir = RunDir.of(run_dir)
        self.dir.require_finished()

    def __repr__(self) -> str:
        return f"Run({str(self.dir.root)!r})"

    @property
    def path(self) -> Path:
        return self.dir.root

    @classmethod
    def train(cls, config, overrides: list[str] | None = None, smoke: bool = False, resume: bool = False) -> Run:
        """Train from a config (object, dict or YAML/JSON path), as `tunesmith train` does; the finished run."""
        from tunesmith.config.load import load_config
        from tunesmith.train.api import train

        if isinstance(config, dict):
            config = load_config(data=config, overrides=overrides)
            overrides = None
        return cls(train(config, overrides=overrides, smoke=smoke, resume=resume).run_dir)

    def evaluate(self, **kwargs) -> dict:
        """`tunesmith eval`: metrics base vs tuned (kwargs: data, base, compare, limit, checkpoint)."""
        from tunesmith.eval.evaluate import evaluate

        return evaluate(self.path, **kwargs)

    def generate(
        self, prompt: str | list[dict], system: str | None = None, checkpoint: str | None = None, **settings
    ) -> str | list[str]:
        """`tunesmith generate` for one prompt: the answer (a list when settings ask num_samples > 1)."""
        from tunesmith.generate.generate import GenerationSettings, generate_from

        (row,) = generate_from(
            self.path, [prompt], GenerationSettings(**settings), system=system, checkpoint=checkpoint
        )
        return row["samples"][0] if len(row["samples"]) == 1 else row["samples"]

    def export(self, gguf: list[str] | None = None, **kwargs):
        """`tunesmith export`: merged model, GGUF files, Modelfile, parity (kwargs: out_dir, verify, merged, checkpoint)."""
        from tunesmith.export.export_run import export_run

        return export_run(self.path, gguf_types=gguf, **kwargs)

    @property
    def metrics(self) -> list[dict]:
        """metrics.jsonl as a list of dicts (one per logged step)."""
        return self.dir.read_metrics()

    @property
    def manifest(self):
        """manifest.json, typed (tunesmith.run_dir.Manifest)."""
        return self.dir.read_manifest()
