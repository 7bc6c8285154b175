"""The data commands on a config file: hub-style `datasets` sources, explicit splits, check_config as the runner calls it."""

from __future__ import annotations

import json

from tests.conftest import REPO
from tunesmith.cli.main import main
from tunesmith.data.check import check_config
from tunesmith.data.stats import stats_target

FIXTURES = REPO / "tests" / "fixtures" / "data"


def _config(tmp_path, model: str, extra_source: dict | None = None):
    sources = [
        {"path": str(FIXTURES / "alpaca.json"), "weight": 2.0},
        {"path": "json", "data_files": str(FIXTURES / "text.jsonl"), "format": "text"},  # through datasets.load_dataset
        {"path": str(FIXTURES / "messages.jsonl"), "use_as": "test"},
    ] + ([extra_source] if extra_source else [])
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"model": {"name_or_path": model}, "data": {"system_prompt": "Be brief.", "sources": sources}})
    )
    return path


def test_check_and_stats_on_a_config(tiny_qwen2, tmp_path):
    path = _config(tmp_path, str(tiny_qwen2))
    result = check_config(path, [])
    assert (result.total, result.rows, result.files) == (0, 6, 3)
    stats = stats_target(str(path))
    assert [(s["rows"], s["train"], s["test"]) for s in stats.sources] == [(2, 2, 0), (2, 2, 0), (2, 0, 2)]
    assert stats.sources[1]["reason"] == "text: set in the config"


def test_check_config_reports_bad_rows_in_sources(tmp_path):
    path = _config(tmp_path, "tiny:qwen2", {"path": str(FIXTURES / "problems.jsonl")})
    assert main(["data", "check", str(path)]) == 1
    result = check_config(path)
    assert result.total == 14 and result.counts["invalid-json"] == 1 and result.counts["duplicate"] == 1
    # The system prompt the config adds does not shift turn numbers: they point into the file.
    assert (
        f"{FIXTURES / 'problems.jsonl'}:4: turn 2: unknown role 'bot' (expected system, user, assistant, tool)"
        in map(str, result.problems)
    )
