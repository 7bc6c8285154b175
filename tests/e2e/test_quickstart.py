"""The README's main command: `tunesmith quickstart` runs offline end to end and prints what a person needs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_quickstart_end_to_end(tmp_path):
    pytest.importorskip("llama_cpp", reason="the quickstart's GGUF step needs the export extra")
    # fewer rows and epochs than the default run, same stages
    result = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "quickstart", "--rows", "400", "--set", "train.epochs=3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in out + result.stderr
    written = int(re.search(r"wrote (\d+) distinct intent-to-JSON rows", out).group(1))
    assert 300 <= written <= 400 and "ok: " in out and "duplicates" not in out
    for stage in ("[1/5] data check", "[2/5] train", "[3/5] eval", "[4/5] report", "[5/5] export"):
        assert stage in out
    run = tmp_path / "runs" / "quickstart"
    metrics = json.loads((run / "eval" / "metrics.json").read_text())["metrics"]
    assert metrics["json_valid"]["base"] == 0.0 and metrics["json_valid"]["tuned"] > 0.5  # visibly improves
    assert re.search(r"json_valid\s+0\.000 -> \d\.\d{3}", out)
    assert (run / "report.html").exists() and "report: runs/quickstart/report.html" in out
    parity = json.loads((run / "export" / "parity.json").read_text())
    assert parity["verdict"] == "passed" and parity["formats"]["f16"]["measured"]["greedy_match_rate"] == 1.0
    assert (
        "gguf f16: runs/quickstart/export/quickstart-f16.gguf (parity with HF: passed, 100% of prompts identical)"
        in out
    )
    assert "ollama create quickstart -f runs/quickstart/export/Modelfile" in out
