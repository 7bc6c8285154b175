"""Plain-text rows on a SentencePiece (Llama-2 style) model: training, generation and llama.cpp's tokenizer of
the real stories260K GGUF see the same ids, BOS first. (The `tunesmith run` export-parity test of this stays on
the realdata branch: with llama.cpp's converter on main, the exported GGUF still tokenizes text prompts apart.)"""

from __future__ import annotations

import pytest

from tests.conftest import shared_path

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
