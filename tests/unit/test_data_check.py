"""`data check`: every kind of problem reported as FILE:LINE with exit 1, a clean file exits 0, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tunesmith.cli.main import main
from tunesmith.data.check import check_paths, message_problems

FIXTURES = REPO / "tests" / "fixtures" / "data"
PROBLEMS = FIXTURES / "problems.jsonl"

EXPECTED = [
    (2, "invalid JSON at column 87: Expecting ',' delimiter"),
    (3, "unknown key 'mesages' (did you mean 'messages'?)"),
    (3, "missing key 'messages' (format messages)"),
    (4, "turn 2: unknown role 'bot' (expected system, user, assistant, tool)"),
    (4, "no assistant turn: nothing to train on"),
    (5, "turn 1: conversation starts with an assistant turn"),
    (6, "turn 1 (user): empty content"),
    (7, "turn 1 (user): content is a number, expected a string"),
    (8, "no assistant turn: nothing to train on"),
    (9, "exact duplicate of line 1"),
    (
        10,
        "turn 1: unknown key 'text' (expected content, name, reasoning_content, role, thinking, tool_call_id, tool_calls, weight)",
    ),
    (10, "turn 1 (user): content is null, expected a string"),
    (12, "row is a JSON list, expected an object"),
    (13, "invalid UTF-8: byte 0xe9 at column 47"),
]


def test_every_problem_kind_with_its_line():
    result = check_paths([PROBLEMS])
    assert [(p.line, p.message) for p in result.problems] == EXPECTED
    assert len(result.counts) >= 8
    assert result.rows == 12


def test_cli_prints_file_line_messages_and_exits_1():
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "data", "check", str(PROBLEMS)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[: len(EXPECTED)] == [f"{PROBLEMS}:{line}: {message}" for line, message in EXPECTED]
    assert lines[-1].startswith("14 problems in 12 rows in 1 file (")
    assert "Traceback" not in proc.stdout + proc.stderr


def test_clean_file_exits_0_and_usage_errors_exit_2(capsys):
    assert main(["data", "check", str(FIXTURES / "clean.jsonl")]) == 0
    assert capsys.readouterr().out.strip() == "ok: 2 rows in 1 file, no problems"
    assert main(["data", "check", str(FIXTURES / "missing.jsonl")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_empty_file_and_other_formats():
    empty = check_paths([FIXTURES / "empty.jsonl"])
    assert [str(p) for p in empty.problems] == [f"{FIXTURES / 'empty.jsonl'}:1: empty file: no rows"]
    for name in (
        "messages.jsonl",
        "sharegpt.json",
        "alpaca.json",
        "prompt_completion.jsonl",
        "text.jsonl",
        "alpaca.tsv",
        "plain.txt",
    ):
        assert check_paths([FIXTURES / name]).total == 0, name


def test_json_array_problems_point_at_the_element_line(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": ""}\n]\n')
    assert [str(p) for p in check_paths([path]).problems] == [f"{path}:3: turn 2 (assistant): empty content"]


def test_turn_order_rules():
    roles = lambda *rs: [{"role": r, "content": "x"} for r in rs]  # noqa: E731
    assert message_problems(roles("user", "assistant", "user", "assistant")) == []
    assert message_problems(roles("user", "user", "assistant")) == [("turn-order", "turn 2: two 'user' turns in a row")]
    assert message_problems(roles("user", "assistant", "system", "user", "assistant")) == [
        ("turn-order", "turn 3: system turn after the first turn")
    ]
    assert message_problems(roles("user", "tool", "assistant")) == [
        ("turn-order", "turn 2: tool turn not after an assistant tool call")
    ]


def test_too_long_rows_with_a_tokenizer(tiny_qwen2, tmp_path, capsys):
    from transformers import AutoTokenizer

    path = tmp_path / "long.jsonl"
    path.write_text('{"text": "' + "hello " * 300 + '"}\n{"text": "short"}\n')
    tokens = len(AutoTokenizer.from_pretrained(tiny_qwen2)("hello " * 300)["input_ids"]) + 1  # + EOS
    code = main(["data", "check", str(path), "--model", str(tiny_qwen2), "--max-length", "64"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0] == f"{path}:1: {tokens} tokens, longer than max_length 64 (would be truncated)"
    assert out[-1] == "1 problem in 2 rows in 1 file (too-long 1)"


def _yahoo_config(tmp_path, assistant: str, rows: list[dict]):
    """A config like examples/yahoo-questions over rows with the columns of title-question-pair."""
    import json

    data = tmp_path / "yahoo.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "config.yaml"
    config.write_text(
        "model: {name_or_path: 'tiny:qwen2'}\n"
        f"data:\n  sources:\n    - {{path: {data}, format: template, template: {{user: 'Ask a question', assistant: '{assistant}'}}}}\n"
    )
    return config, data


def test_template_naming_a_missing_column_lists_the_columns_with_did_you_mean(tmp_path, capsys):
    rows = [
        {"title": "why is the sky blue?", "questions": "i saw it today"},
        {"title": "best pizza?", "questions": "in rome"},
    ]
    config, data = _yahoo_config(tmp_path, "{title} {questionBody}", rows)
    assert main(["data", "check", str(config)]) == 1
    out = capsys.readouterr().out.splitlines()
    expected = (
        "template.assistant uses column 'questionBody' which the row lacks; "
        "the row has: questions, title (did you mean 'questions'?)"
    )
    assert out[:2] == [f"{data}:1: {expected}", f"{data}:2: {expected}"]
    fixed, _ = _yahoo_config(tmp_path, "{title} {questions}", rows)
    assert main(["data", "check", str(fixed)]) == 0


def test_null_cells_are_file_line_problems_and_training_refuses_them(tmp_path, capsys):
    from tunesmith.config.load import load_config
    from tunesmith.data.splits import prepare_splits
    from tunesmith.errors import DataError

    rows = [
        {"title": "why is the sky blue?", "questions": "i saw it today"},
        {"title": "best pizza?", "questions": None},
    ]
    config, data = _yahoo_config(tmp_path, "{title} {questions}", rows)
    assert main(["data", "check", str(config)]) == 1
    assert (
        capsys.readouterr().out.splitlines()[0]
        == f"{data}:2: template.assistant: column 'questions' is null (it would be trained as the text 'None')"
    )
    try:
        prepare_splits(load_config(config))
    except DataError as exc:
        assert "row 2" in exc.message and "is null" in exc.message
    else:
        raise AssertionError("a null cell was accepted for training")
    # A null message content in a messages file (the 'None' the issue saw) is refused the same way.
    messages = tmp_path / "m.jsonl"
    messages.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": null}]}\n')
    cfg = load_config(data={"model": {"name_or_path": "tiny:qwen2"}, "data": {"sources": [{"path": str(messages)}]}})
    try:
        prepare_splits(cfg)
    except DataError as exc:
        assert "row 1: turn 2 (assistant): content is null" in exc.message
    else:
        raise AssertionError("a null assistant content was accepted for training")


@pytest.mark.parametrize("truncation, action", [("right", "cut from the right"), ("drop", "dropped")])
def test_a_configs_long_rows_are_noted_with_what_training_does_not_failed(
    tiny_qwen2, tmp_path, capsys, truncation, action
):
    # Real corpora (c4-style text) have rows far past max_length; data.truncation says what happens to them,
    # so `data check CONFIG` (and `tunesmith run`, which stops on its problems) must not fail on them.
    data = tmp_path / "text.jsonl"
    data.write_text('{"text": "' + "hello " * 300 + '"}\n{"text": "short"}\n')
    config = tmp_path / "c.yaml"
    config.write_text(
        f"model: {{name_or_path: {tiny_qwen2}}}\n"
        f"data: {{sources: [{{path: {data}}}], max_length: 64, truncation: {truncation}}}\n"
    )
    code = main(["data", "check", str(config)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0, out
    assert out[0] == "ok: 2 rows in 1 file, no problems"
    assert out[1].startswith(f"note: 1 row longer than max_length will be {action} (data.truncation: {truncation}): ")
    assert f"{data}:1: " in out[1]
