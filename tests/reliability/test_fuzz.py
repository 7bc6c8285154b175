"""No internal error on user input: mutated configs and data files of every format through the CLI's main().

`config check`, `data check`, `data stats` and `train --smoke` get broken inputs (see mutations.py) and must answer
with a user error (exit 1 or 2, a message) or success, never "internal error" and never a traceback. Fixed seed
(derandomize), a bounded number of examples: the whole file runs in well under 2 minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability import tally
from tests.reliability.mutations import SUFFIXES, broken_config_text, broken_file, valid_config, valid_files
from tunesmith.cli.main import main

FUZZ = settings(
    derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True
)
_names = itertools.count()


def run_main(*argv: str) -> tuple[int, str]:
    """main(argv) in this process; (exit code, stdout + stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


def assert_user_facing(code: int, output: str, argv: tuple[str, ...], data: bytes | None = None) -> None:
    tally.inputs["tried"] += 1
    if "internal error" in output or "Traceback" in output or code not in (0, 1, 2):
        tally.inputs["internal_errors"] += 1
        shown = repr(data[:300]) if data is not None else ""
        raise AssertionError(f"tunesmith {' '.join(argv)} -> exit {code}:\n{output[-2000:]}\ninput: {shown}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def write(folder: Path, suffix: str, data: bytes) -> Path:
    path = folder / f"in{next(_names)}{suffix}"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_valid_files_pass_data_check(workdir, suffix, tiny_qwen2):
    """The unmutated inputs are valid, so every failure below comes from the mutation."""
    path = write(workdir, suffix, valid_files()[suffix])
    assert run_main("data", "check", str(path))[0] == 0
    assert run_main("data", "stats", str(path), "--model", str(tiny_qwen2))[0] == 0


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_broken_data_files_get_user_errors(workdir, suffix, tiny_qwen2):
    @settings(FUZZ, max_examples=25)
    @given(data=broken_file(suffix))
    def check(data: bytes):
        path = write(workdir, suffix, data)
        for argv in (("data", "check", str(path)), ("data", "stats", str(path), "--model", str(tiny_qwen2))):
            assert_user_facing(*run_main(*argv), argv, data)

    check()


def test_bom_and_crlf_jsonl_is_valid(workdir):
    data = b"\xef\xbb\xbf" + valid_files()[".jsonl"].replace(b"\n", b"\r\n")
    code, output = run_main("data", "check", str(write(workdir, ".jsonl", data)))
    assert code == 0, output


def test_broken_configs_get_user_errors(workdir, tiny_qwen2):
    data = write(workdir, ".jsonl", valid_files()[".jsonl"])
    config = valid_config(data, str(tiny_qwen2), workdir / "runs")

    @settings(FUZZ, max_examples=60)
    @given(case=broken_config_text(config))
    def check(case):
        suffix, text = case
        path = write(workdir, suffix, text)
        for argv in (("config", "check", str(path)), ("data", "check", str(path))):
            assert_user_facing(*run_main(*argv), argv, text)

    check()


@pytest.mark.slow
def test_train_smoke_on_broken_inputs(workdir, tiny_qwen2, monkeypatch):
    """A few whole `train --smoke` runs on damaged data and configs (each is seconds, so few examples)."""
    monkeypatch.setenv("TUNESMITH_NO_PROGRESS", "1")

    @settings(FUZZ, max_examples=12)
    @given(suffix=st.sampled_from(SUFFIXES), data=st.data())
    def check(suffix, data):
        raw = data.draw(broken_file(suffix))
        path = write(workdir, suffix, raw)
        config = write(workdir, ".yaml", yaml.safe_dump(valid_config(path, str(tiny_qwen2), workdir / "runs")).encode())
        argv = ("train", str(config), "--smoke")
        assert_user_facing(*run_main(*argv), argv, raw)

    check()


def test_planted_bug_an_internal_error_is_caught(workdir, monkeypatch):
    import tunesmith.data.check as check

    def broken(path):
        raise KeyError("planted")

    monkeypatch.setattr(check, "iter_raw_rows", broken)
    path = write(workdir, ".jsonl", valid_files()[".jsonl"])
    code, output = run_main("data", "check", str(path))
    with pytest.raises(AssertionError, match="internal error"):
        assert_user_facing(code, output, ("data", "check", str(path)))
    tally.inputs["tried"] -= 1
    tally.inputs["internal_errors"] -= 1  # planted, not found
