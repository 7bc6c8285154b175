"""Generation and chat: greedy is deterministic, sampling differs, batching (left padding) changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.unit.run_fixtures_eval import make_run_dir
from tunesmith.cli.main import main
from tunesmith.generate.chat import ChatSession, chat_loop
from tunesmith.generate.generate import (
    GenerationSettings,
    build_messages,
    cut_at_stop,
    generate,
    load_for_generation,
    read_prompts,
)

PROMPTS = ["set an alarm for 6am", "play some jazz please, and loud", "hi"]


@pytest.fixture(scope="module")
def run_dir(tiny_qwen2, tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("gen") / "run", tiny_qwen2)


@pytest.fixture(scope="module")
def tuned(run_dir):
    return load_for_generation(run_dir)


def test_greedy_is_deterministic_and_batching_does_not_change_answers(tuned):
    model, tokenizer = tuned
    conversations = [build_messages(p) for p in PROMPTS]
    settings = GenerationSettings(max_new_tokens=12, batch_size=3)
    batched = generate(model, tokenizer, conversations, settings)
    assert batched == generate(model, tokenizer, conversations, settings)
    one_by_one = generate(model, tokenizer, conversations, GenerationSettings(max_new_tokens=12, batch_size=1))
    # Prompts of different lengths share a left-padded batch: the answers must equal unpadded ones.
    assert batched == one_by_one
    assert all(len(samples) == 1 for samples in batched)


def test_sampling_gives_n_different_samples_and_a_seed_repeats_them(tuned):
    model, tokenizer = tuned
    settings = GenerationSettings(max_new_tokens=10, temperature=0.9, num_samples=5, seed=7)
    samples = generate(model, tokenizer, [build_messages("weather in paris today")], settings)[0]
    assert len(samples) == 5 and len(set(samples)) == 5
    assert generate(model, tokenizer, [build_messages("weather in paris today")], settings)[0] == samples


def test_tuned_and_base_differ(run_dir, tuned):
    base_model, base_tok = load_for_generation(run_dir, base=True)
    conv = [build_messages("call anna")]
    settings = GenerationSettings(max_new_tokens=8)
    assert generate(base_model, base_tok, conv, settings) != generate(tuned[0], tuned[1], conv, settings)


def test_stop_strings_and_system_prompt():
    assert cut_at_stop("abc STOP def", ["STOP"]) == "abc "
    assert cut_at_stop("a;b|c", ["|", ";"]) == "a"
    assert build_messages("hi", "be brief") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    own = [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]
    assert build_messages(own, "ignored") == own


def test_read_prompts_txt_and_jsonl(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\ntwo\n")
    assert read_prompts(txt) == ["one", "two"]
    jsonl = tmp_path / "p.jsonl"
    conv = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "reference"}]
    jsonl.write_text(json.dumps({"prompt": "a"}) + "\n" + json.dumps({"messages": conv}) + "\n")
    assert read_prompts(jsonl) == ["a", conv[:1]]


def test_cli_generate_samples_and_greedy(run_dir, tmp_path, capsys):
    out = tmp_path / "samples.jsonl"
    args = ["generate", str(run_dir), "--prompt", "book a table for 2 at 7pm", "--max-new-tokens", "8"]
    assert main([*args, "-n", "5", "--temperature", "0.9", "--seed", "1", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1 and len(rows[0]["samples"]) == 5 and len(set(rows[0]["samples"])) == 5
    greedy = []
    for _ in range(2):
        assert main([*args, "--temperature", "0", "--out", str(out)]) == 0
        greedy.append(json.loads(out.read_text())["samples"])
    assert greedy[0] == greedy[1] and len(greedy[0]) == 1
    capsys.readouterr()


def test_cli_generate_rejects_n_without_temperature(run_dir, capsys):
    assert main(["generate", str(run_dir), "--prompt", "x", "-n", "3"]) == 2
    assert "identical answers" in capsys.readouterr().err


def test_chat_streams_keeps_history_and_resets(tuned):
    model, tokenizer = tuned
    session = ChatSession(
        model, tokenizer, system="be brief", settings=GenerationSettings(max_new_tokens=6, temperature=0)
    )
    pieces: list[str] = []
    reply = session.send("hello", on_piece=pieces.append)
    assert reply == "".join(pieces).strip()
    session.send("and again")
    assert [m["role"] for m in session.messages()] == ["system", "user", "assistant", "user", "assistant"]
    lines = iter(["/reset", "hi there", "", "/exit", "never read"])
    written: list[str] = []
    turns = chat_loop(session, read=lambda _: next(lines), write=written.append)
    assert turns == 1
    assert "(history cleared)" in written
    assert [m["content"] for m in session.history if m["role"] == "user"] == ["hi there"]
