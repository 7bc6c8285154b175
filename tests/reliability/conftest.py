"""Print the reliability tally (inputs tried, faults injected, outcomes) as one line after the tests."""

from __future__ import annotations

from tests.reliability import tally


def pytest_terminal_summary(terminalreporter):
    if tally.inputs["tried"] or tally.faults:
        terminalreporter.write_line(tally.summary())
