"""Open report.html in headless Chromium: it renders (screenshot) and the DOM holds the loss chart and metrics table."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.unit.test_report import make_report_run
from tunesmith.report.build import build_report

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2400",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")


def run_chromium(binary: str, profile, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    binary = chromium()
    run = make_report_run(tmp_path / "run")
    report = build_report(run.root)
    url = report.resolve().as_uri()

    shot = tmp_path / "report.png"
    result = run_chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}", url)
    assert shot.is_file(), result.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a real page, not a blank frame

    dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", url).stdout
    loss_chart = re.search(r'<img[^>]*id="loss-chart"[^>]*>', dom)
    assert loss_chart and 'src="data:image/png;base64,' in loss_chart.group(0)
    table = re.search(r'<table id="metrics-table">.*?</table>', dom, re.S)
    assert table, "metrics table missing from the rendered DOM"
    assert table.group(0).count("<tr>") == 3  # header + loss + json_valid
    assert "json_valid" in table.group(0) and "+1.000" in table.group(0)
