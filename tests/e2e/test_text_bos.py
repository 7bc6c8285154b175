"""Plain-text rows on a SentencePiece (Llama-2 style) model: training, generation and the GGUF in llama.cpp see
the same ids, BOS first, through `tunesmith run` on the real stories260K."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_path
from tunesmith.cli.main import main

pytestmark = pytest.mark.slow
NAMES = ["Lily", "Tom", "Sue", "Ben", "Max", "Mia", "Sam", "Zoe", "Tim", "Ann", "Joe", "Kim"]


def test_text_rows_on_stories260k_through_run(tmp_path, monkeypatch):
    gguf = shared_path("models", "stories260K", "stories260K.gguf")
    pytest.importorskip("llama_cpp")
    monkeypatch.chdir(tmp_path)
    # rows shaped like a pre-training text set (LLaMA-Factory's c4_demo: {"text": ...})
    data = tmp_path / "stories.jsonl"
    data.write_text("".join(json.dumps({"text": f"Once upon a time, there was a little girl named {n}. She loved to play outside in the park."}) + "\n" for n in NAMES))
    config = tmp_path / "config.yaml"
    config.write_text(
        f"run: {{name: stories-text, output_dir: {tmp_path / 'runs'}}}\n"
        f"model: {{name_or_path: {gguf}}}\n"
        f"data: {{sources: [{{path: {data}, format: text}}], split: {{val: 0.1, test: 0.2}}, max_length: 64}}\n"
        "train: {mode: full, learning_rate: 1.0e-4}\n"
        "eval: {metrics: [loss]}\n"
        "export: {merged: true, gguf: [f32], verify: true, verify_prompts: 2}\n"
        "tracking: {report_to: [none]}\n"
    )
    assert main(["run", str(config), "--smoke"]) == 0  # before the fix: "llama.cpp tokenizes 1 of 1 prompts differently"
    run_dir = tmp_path / "runs" / "stories-text-smoke"
    parity = json.loads((run_dir / "export" / "parity.json").read_text())
    assert parity["formats"]["f32"]["tokenization_match_rate"] == 1.0
    assert all(p["hf_tokens"] == p["gguf_tokens"] for p in parity["formats"]["f32"]["prompts"])


def test_bos_first_for_text_prompts_and_training_on_stories260k():
    from tunesmith.data.tokenize import expects_bos, prompt_ids, tokenize_example, with_bos
    from tunesmith.model.load import load_tokenizer

    tokenizer = load_tokenizer(str(shared_path("models", "stories260K", "stories260K.gguf")))
    bos = tokenizer.bos_token_id
    assert expects_bos(tokenizer) and bos == 1
    text = tokenize_example(tokenizer, {"text": "Once upon a time"})
    assert text.input_ids[0] == bos and text.input_ids.count(bos) == 1 and text.input_ids[-1] == tokenizer.eos_token_id
    chat = tokenize_example(tokenizer, {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})
    assert chat.input_ids[0] == bos and chat.labels[0] == -100  # BOS is never a target
    assert prompt_ids(tokenizer, [{"role": "user", "content": "Hi"}])[0] == bos
    assert with_bos(tokenizer, [bos, 5]) == [bos, 5]  # never doubled
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(shared_path("models", "stories260K", "stories260K.gguf")), vocab_only=True, verbose=False)
    assert llm.tokenize(b"Once upon a time", add_bos=True) == text.input_ids[:-1]  # llama.cpp's ids = training's
