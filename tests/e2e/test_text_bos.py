"""Plain-text rows on a SentencePiece (Llama-2 style) model: training, generation, llama.cpp's tokenizer of the
real stories260K GGUF and the GGUF `tunesmith run` exports see the same ids, BOS first."""

from __future__ import annotations

import pytest

from tests.conftest import shared_path
from tunesmith.cli.main import main

pytestmark = pytest.mark.slow


def test_bos_first_for_text_prompts_and_training_on_stories260k():
    from tunesmith.data.tokenize import expects_bos, prompt_ids, tokenize_example, with_bos
    from tunesmith.model.load import load_tokenizer

    tokenizer = load_tokenizer(str(shared_path("models", "stories260K", "stories260K.gguf")))
    bos = tokenizer.bos_token_id
    assert expects_bos(tokenizer) and bos == 1
    text = tokenize_example(tokenizer, {"text": "Once upon a time"})
    assert text.input_ids[0] == bos and text.input_ids.count(bos) == 1 and text.input_ids[-1] == tokenizer.eos_token_id
    chat = tokenize_example(
        tokenizer, {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    )
    assert chat.input_ids[0] == bos and chat.labels[0] == -100  # BOS is never a target
    assert prompt_ids(tokenizer, [{"role": "user", "content": "Hi"}])[0] == bos
    assert with_bos(tokenizer, [bos, 5]) == [bos, 5]  # never doubled
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(shared_path("models", "stories260K", "stories260K.gguf")), vocab_only=True, verbose=False)
    assert llm.tokenize(b"Once upon a time", add_bos=True) == text.input_ids[:-1]  # llama.cpp's ids = training's


def test_text_rows_on_stories260k_through_run_pass_the_export_verdict(tmp_path, monkeypatch):
    """`tunesmith run` on plain-text rows (LLaMA-Factory's c4_demo.jsonl: one `text` column) ends with the GGUF
    passing parity. Before the fix the converter's GGUF said add_space_prefix false and llama.cpp read every
    prompt's first word apart (HF [1, 403 '▁Once', ...] vs llama.cpp [1, 441 'O', 416 'n', 331 'ce', ...])."""
    import json

    from gguf import GGUFReader

    gguf = shared_path("models", "stories260K", "stories260K.gguf")
    corpus = shared_path("llamafactory", "c4_demo.jsonl")
    llama_cpp = pytest.importorskip("llama_cpp")
    monkeypatch.chdir(tmp_path)
    # the first 12 rows, each cut to its first ~160 characters (data check stops a run on rows over max_length)
    texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()[:12]]
    rows = [json.dumps({"text": text[:160].rsplit(" ", 1)[0]}, ensure_ascii=False) for text in texts]
    data = tmp_path / "c4_demo.jsonl"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"run: {{name: stories-text, output_dir: {tmp_path / 'runs'}}}\n"
        f"model: {{name_or_path: {gguf}}}\n"
        f"data: {{sources: [{{path: {data}, format: text}}], split: {{val: 0.1, test: 0.2}}, max_length: 128}}\n"
        "train: {mode: full, learning_rate: 1.0e-4}\n"
        "eval: {metrics: [loss]}\n"
        "export: {merged: true, gguf: [f32], verify: true, verify_prompts: 2, verify_tokens: 8}\n"
        "tracking: {report_to: [none]}\n"
    )
    assert main(["run", str(config), "--smoke"]) == 0
    export = tmp_path / "runs" / "stories-text-smoke" / "export"
    report = json.loads((export / "parity.json").read_text())
    f32 = report["formats"]["f32"]
    assert report["verdict"] == "passed" and f32["verdict"] == "passed" and len(f32["prompts"]) == 2
    assert f32["measured"]["tokenization_match_rate"] == 1.0
    path = export / "stories-text-smoke-f32.gguf"
    assert GGUFReader(str(path)).fields["tokenizer.ggml.add_space_prefix"].contents() is True
    # a training row's ids (BOS, text, EOS) are what llama.cpp gives for that text with BOS
    from tunesmith.data.tokenize import tokenize_text
    from tunesmith.model.load import load_tokenizer

    tokenizer = load_tokenizer(str(export / "merged"))
    text = json.loads(rows[0])["text"]
    trained = tokenize_text(tokenizer, text).input_ids[:-1]
    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    assert llm.tokenize(text.encode("utf-8"), add_bos=True, special=False) == trained
