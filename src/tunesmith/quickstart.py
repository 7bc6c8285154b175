"""The offline quickstart: write a generated intent-to-JSON data set, then run the packaged quickstart config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tunesmith.data.synth import write_intent_dataset
from tunesmith.pipeline import run_pipeline

DATA_DIR = Path("quickstart-data")


def quickstart_config_text() -> str:
    """The packaged quickstart config (identical to examples/quickstart.yaml; a test keeps them equal)."""
    return resources.files("tunesmith").joinpath("resources/quickstart.yaml").read_text(encoding="utf-8")


def run_quickstart(rows: int = 2000, overrides: list[str] | None = None, export: bool = True, echo=print):
    """Generate the data under ./quickstart-data, then data check -> train -> eval -> report -> export."""
    DATA_DIR.mkdir(exist_ok=True)
    data_file = write_intent_dataset(DATA_DIR / "intent.jsonl", rows=rows, seed=0, unique=True)
    written = sum(1 for _ in data_file.open(encoding="utf-8"))
    config_file = DATA_DIR / "quickstart.yaml"
    config_file.write_text(quickstart_config_text(), encoding="utf-8")
    echo(f"wrote {written} distinct intent-to-JSON rows to {data_file} and the config to {config_file}")
    return run_pipeline(config_file, overrides, export=export, echo=echo)
