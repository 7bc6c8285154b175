"""report.html escapes all data: a row holding <script> and an onerror attribute renders as text in Chromium."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.test_report_browser import chromium, run_chromium
from tests.reliability import tally
from tests.unit.test_report import make_report_run
from tunesmith.report.build import build_report
from tunesmith.run_dir import write_jsonl

SCRIPT = "<script>document.body.setAttribute('data-pwned', 'script')</script>"
ONERROR = "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'onerror')\">"


def hostile_run(root):
    """The report fixture run, with model outputs, references and a data row carrying the two payloads."""
    run = make_report_run(root)
    rows = [
        {"index": i, "prompt": f"{SCRIPT} prompt {i}", "reference": ONERROR, "base": SCRIPT, "tuned": ONERROR}
        for i in range(3)
    ]
    write_jsonl(run.eval / "outputs.jsonl", rows)
    write_jsonl(
        run.split_file("test"),
        [{"messages": [{"role": "user", "content": SCRIPT}, {"role": "assistant", "content": ONERROR}]}],
    )
    manifest = json.loads(run.manifest.read_text())
    run.manifest.write_text(json.dumps({**manifest, "base_model": ONERROR}))
    return run


def rendered_dom(tmp_path, report) -> str:
    binary = chromium()
    # virtual time lets a failed <img> load fire its onerror before the DOM is dumped
    return run_chromium(
        binary, tmp_path / "profile", "--virtual-time-budget=3000", "--dump-dom", report.resolve().as_uri()
    ).stdout


def payload_ran(dom: str) -> bool:
    return bool(re.search(r"<body[^>]*data-pwned", dom))


@pytest.mark.slow
def test_hostile_data_renders_as_text_in_chromium(tmp_path):
    report = build_report(hostile_run(tmp_path / "run").root)
    dom = rendered_dom(tmp_path, report)
    assert "<body" in dom, "chromium rendered nothing"
    assert not payload_ran(dom)
    assert "&lt;script&gt;document.body.setAttribute" in dom and "&lt;img src=x onerror=" in dom  # shown, as text
    assert "<script" not in report.read_text()
    tally.fault("<script> and onerror in data, outputs and manifest", "rendered as text in Chromium, nothing ran")


@pytest.mark.slow
def test_planted_bug_unescaped_report_is_caught(tmp_path, monkeypatch):
    from jinja2 import Environment

    import tunesmith.report.build as build

    def unescaped(context):
        text = (build.resources.files("tunesmith.report") / "templates/report.html").read_text(encoding="utf-8")
        return Environment(autoescape=False).from_string(text).render(**context)

    monkeypatch.setattr(build, "render", unescaped)
    report = build_report(hostile_run(tmp_path / "run").root)
    assert payload_ran(rendered_dom(tmp_path, report))
