"""Models on disk: tiny builder round-trips with plain transformers; stories260K loads from GGUF."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import shared_path
from tunesmith.model.load import load_model, load_tokenizer

SAMPLES = [
    "Hello  world!\n\tTabs, 123456 numbers.",
    "Café naïve — “quotes” and emoji 😀",
    "  leading spaces\r\nand CRLF",
    '{"intent": "play_music", "slots": {"genre": "jazz"}}',
]


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_cli_builds_a_plain_hf_folder(tmp_path, arch):
    out = tmp_path / arch
    result = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "model", "tiny", "--arch", arch, "--out", str(out), "--seed", "3"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == arch
    for text in SAMPLES:
        assert tok.decode(tok(text)["input_ids"]) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"


def test_tiny_is_deterministic_for_a_seed(tmp_path):
    from tunesmith.model.tiny import build_tiny_model

    a = AutoModelForCausalLM.from_pretrained(build_tiny_model("llama", tmp_path / "a", seed=5))
    b = AutoModelForCausalLM.from_pretrained(build_tiny_model("llama", tmp_path / "b", seed=5))
    c = AutoModelForCausalLM.from_pretrained(build_tiny_model("llama", tmp_path / "c", seed=6))
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tiny_tokenizer_trained_on_given_text(tmp_path):
    from tunesmith.model.tiny import build_tiny_model

    text = "zyxxyzzy quorblat " * 200
    out = build_tiny_model("qwen2", tmp_path / "t", texts=[text])
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok("zyxxyzzy")["input_ids"]) == 1


def test_stories260k_from_gguf_reproduces_reference_sample():
    gguf = shared_path("models", "stories260K", "stories260K.gguf")
    reference = shared_path("models", "stories260K", "stories260K.md").read_text()
    first_sentence = "Once upon a time, there was a little girl named Lily."
    assert first_sentence in reference
    tok = load_tokenizer(str(gguf))
    model = load_model(str(gguf))
    assert sum(p.numel() for p in model.parameters()) == 292_800
    bos = torch.tensor([[tok.bos_token_id]])
    out = model.generate(bos, max_new_tokens=80, do_sample=False, pad_token_id=tok.eos_token_id)
    text = tok.decode(out[0], skip_special_tokens=True).strip()
    assert text.startswith(first_sentence + " She loved to play outside in the park.")


def test_missing_model_is_a_clear_error(tmp_path):
    from tunesmith.errors import ModelError

    with pytest.raises(ModelError, match="cannot load"):
        load_model(str(tmp_path / "nothing-here"))


@pytest.mark.parametrize("family", ["gemma", "phi3", "mistral"])
def test_tiny_on_a_real_sentencepiece_tokenizer(tmp_path, family):
    """`model tiny --tokenizer FROM`: the real vocabulary and its tokenizer.model (what converters read) are kept."""
    from tunesmith.cli.main import main

    spm = shared_path("models", "stories260K", "tok512.model")
    assert main(["model", "tiny", "--arch", family, "--tokenizer", str(spm), "--out", str(tmp_path / "m")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert model.config.model_type == family and model.config.vocab_size == len(tok) == 512
    assert (tmp_path / "m" / "tokenizer.model").read_bytes() == spm.read_bytes()
    assert tok("Once upon a time")["input_ids"] == load_tokenizer(str(spm))("Once upon a time")["input_ids"]


def test_tiny_tokenizer_and_text_exclude_each_other(tmp_path, capsys):
    from tunesmith.cli.main import main

    text = tmp_path / "t.txt"
    text.write_text("hello")
    assert main(["model", "tiny", "--tokenizer", "x.model", "--text", str(text), "--out", str(tmp_path / "m")]) == 2
    assert "--tokenizer and --text exclude each other" in capsys.readouterr().err
