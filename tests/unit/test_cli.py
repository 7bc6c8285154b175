"""The CLI: instant help, every command documented in README, user errors without tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys
import time

from tests.conftest import REPO
from tunesmith.cli.main import COMMANDS, main


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "tunesmith.cli.main", *args], capture_output=True, text=True, **kwargs)


def test_help_lists_every_command_quickly():
    start = time.perf_counter()
    result = run_cli("--help")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", result.stdout, re.M), name
    # Lazy imports: no torch/transformers at --help. (Wall time is only a loose guard; the import check is the real one.)
    assert elapsed < 5
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tunesmith.cli.main import main; main(['--help']) if False else None; "
            "import tunesmith.cli.main as m; m.build_parser(); print('torch' in sys.modules, 'transformers' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "False False"


def test_readme_documents_every_command():
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`tunesmith ([a-z]+)", readme))
    assert documented >= set(COMMANDS), f"README misses: {set(COMMANDS) - documented}"
    assert documented <= set(COMMANDS) | {"help"}, f"README documents unknown commands: {documented - set(COMMANDS)}"


def test_every_option_has_help():
    from tunesmith.cli.main import build_parser

    for name in COMMANDS:
        parser = build_parser(name)
        stack = [parser]
        while stack:
            p = stack.pop()
            for action in p._actions:
                if action.choices and isinstance(action.choices, dict):
                    stack.extend(action.choices.values())
                elif action.dest not in ("help", "version"):
                    assert action.help, f"tunesmith {name}: option {action.option_strings or action.dest} has no help"


def test_config_check_exit_codes_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {learnin_rate: 1e-4}\n")
    good = tmp_path / "good.yaml"
    (tmp_path / "rows.jsonl").write_text('{"text": "a row"}\n' * 3)
    good.write_text(f"run: {{name: ok}}\ndata: {{sources: [{{path: {tmp_path / 'rows.jsonl'}}}]}}\n")
    result = run_cli("config", "check", str(bad), str(good))
    assert result.returncode == 2
    assert "train.learnin_rate" in result.stdout and "learning_rate" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert run_cli("config", "check", str(good)).returncode == 0


def test_user_error_exit_2_without_traceback(capsys):
    code = main(["config", "show", "/nonexistent.yaml"])
    captured = capsys.readouterr()
    assert code == 2
    assert "no such config file" in captured.err
    assert "Traceback" not in captured.err
