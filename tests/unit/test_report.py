"""The HTML report: self-contained, every section present, charts embedded, values escaped."""

from __future__ import annotations

import json
import re

import pytest

from tests.unit.run_fixtures_eval import fake_metrics
from tunesmith.cli.main import main
from tunesmith.config.load import load_config, save_config
from tunesmith.data.synth import intent_dataset
from tunesmith.errors import TunesmithError
from tunesmith.report.build import build_report, eval_rows, training_section
from tunesmith.run_dir import RunDir, write_jsonl

METRICS = {
    "data": "x",
    "examples": 3,
    "generated": 3,
    "models": ["base", "tuned"],
    "decoding": {"temperature": 0.0, "max_new_tokens": 32},
    "metrics": {
        "loss": {"base": 6.0, "tuned": 0.5, "delta": -5.5},
        "json_valid": {"base": 0.0, "tuned": 1.0, "delta": 1.0},
    },
}


def make_report_run(root, with_export: bool = True) -> RunDir:
    """A run directory with everything the report reads, but no model (the report needs none)."""
    run = RunDir.of(root)
    root.mkdir(parents=True)
    save_config(
        load_config(data={"run": {"name": "intent-demo"}, "model": {"name_or_path": "tiny:qwen2"}}), run.config_file
    )
    run.manifest.write_text(json.dumps({"base_model": "tiny:qwen2", "device": "cpu", "precision": "fp32"}))
    write_jsonl(run.metrics, fake_metrics())
    rows = intent_dataset(30, seed=0)
    for split, part in (("train", rows[:20]), ("val", rows[20:25]), ("test", rows[25:])):
        write_jsonl(run.split_file(split), part)
    run.eval.mkdir()
    (run.eval / "metrics.json").write_text(json.dumps(METRICS))
    outputs = [
        {"index": i, "prompt": f"prompt {i}", "reference": "{}", "base": "<b>raw</b>", "tuned": '{"intent":"x"}'}
        for i in range(12)
    ]
    write_jsonl(run.eval / "outputs.jsonl", outputs)
    if with_export:
        run.export.mkdir()
        formats = {
            t: {
                "gguf_type": t,
                "file": f"model-{t}.gguf",
                "verdict": verdict,
                "bounds": {"max_logit_diff": bound},
                "measured": {"greedy_match_rate": rate, "max_logit_diff": diff, "tokenization_match_rate": 1.0},
                "prompts": [],
            }
            for t, verdict, rate, diff, bound in (("f16", "passed", 1.0, 2e-4, 1e-2), ("q8_0", "failed", 0.8, 0.5, 0.1))
        }
        (run.export / "parity.json").write_text(
            json.dumps({"verdict": "failed", "prompts": 5, "tokens": 32, "formats": formats})
        )
        (run.export / "model-q8_0.gguf").write_bytes(b"\0" * 2048)
    return run


def test_report_has_every_section_and_is_self_contained(tmp_path):
    run = make_report_run(tmp_path / "run")
    html = build_report(run.root).read_text()
    for element_id in (
        "summary-cards",
        "config-table",
        "data-table",
        "length-histogram",
        "loss-chart",
        "lr-chart",
        "speed-chart",
        "metrics-table",
        "samples",
        "export-table",
    ):
        assert f'id="{element_id}"' in html, element_id
    assert html.count('src="data:image/png;base64,') == 4
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from the network
    assert "<script" not in html
    assert html.count('<td class="out">prompt ') == 10  # ten samples, not twelve
    assert "&lt;b&gt;raw&lt;/b&gt;" in html and "<b>raw</b>" not in html  # model output is escaped
    assert 'id="parity-table"' in html and "model-q8_0.gguf" in html and "2.0 KiB" in html
    assert '<td>q8_0</td><td class="num worse">80%</td><td class="num">0.5 (bound 0.1)</td>' in html
    assert "parity FAILED" in html and "parity passed" not in html
    assert "intent-demo" in html and "valid JSON" in html


def test_report_without_eval_or_export_still_renders(tmp_path):
    run = make_report_run(tmp_path / "run", with_export=False)
    (run.eval / "metrics.json").unlink()
    (run.eval / "outputs.jsonl").unlink()
    html = build_report(run.root, out=tmp_path / "r.html").read_text()
    assert "no evaluation yet" in html and 'id="metrics-table"' not in html and 'id="export"' not in html


def test_eval_rows_mark_better_and_worse():
    rows = {r["name"]: r for r in eval_rows(METRICS)}
    assert rows["loss"]["delta_class"] == "better" and rows["loss"]["values"] == ["6.000", "0.500"]
    assert rows["json_valid"]["delta_class"] == "better" and rows["json_valid"]["delta"] == "+1.000"
    worse = eval_rows({"models": ["base", "tuned"], "metrics": {"loss": {"base": 1.0, "tuned": 2.0, "delta": 1.0}}})
    assert worse[0]["delta_class"] == "worse"


def test_training_section_reads_trainer_keys():
    section = training_section(fake_metrics(10))
    assert section["steps"] == 10 and section["loss_chart"] and section["lr_chart"] and section["speed_chart"]
    assert section["reward_chart"] is None  # an SFT run has no rewards
    assert training_section([])["loss_chart"] is None


def test_grpo_run_report_shows_the_reward_curves(tmp_path):
    from tunesmith.report.build import reward_chart

    rows = [
        {
            "step": s,
            "loss": 0.0,
            "reward": 0.1 * s,
            "rewards/format/mean": 0.05 * s,
            "rewards/format/std": 0.1,
            "rewards/numeric_match/mean": 0.0,
        }
        for s in range(1, 6)
    ]
    assert reward_chart(rows).startswith("data:image/")
    run = make_report_run(tmp_path / "run", with_export=False)
    write_jsonl(run.metrics, rows)
    html = build_report(run.root, out=tmp_path / "r.html").read_text()
    assert 'id="reward-chart"' in html and 'id="loss-chart"' in html


def test_cli_report_and_missing_run(tmp_path, capsys):
    run = make_report_run(tmp_path / "run")
    assert main(["report", str(run.root)]) == 0
    assert "report written to" in capsys.readouterr().out and run.report.is_file()
    with pytest.raises(TunesmithError, match="not a tunesmith run directory"):
        build_report(tmp_path / "nothing")
