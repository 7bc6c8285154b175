"""llama.cpp's '▁' before text (tokenizer.ggml.add_space_prefix) on the real stories260K SentencePiece vocabulary.

HF's Llama tokenizer (Metaspace prepend_scheme "first") puts '▁' before the string's first text only: a text row
trained as BOS id + "▁Once" needs the key on, a chat prompt that writes "<s>User:" as text needs it off. Export
decides from the run's own prompt ids; a GGUF with the wrong value fails the verdict's tokenization check.
"""

from __future__ import annotations

import pytest

from tests.conftest import shared_path
from tunesmith.data.tokenize import encode, prompt_ids, with_bos

STORY = "Once upon a time, there was a little girl named Lily."


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    """(HF folder saved as export saves a merged model, float32 model, tokenizer) of the real stories260K."""
    import torch

    from tunesmith.export.merge import save_model_folder
    from tunesmith.model.load import load_model, load_tokenizer
    from tunesmith.model.templates import builtin_template

    gguf = shared_path("models", "stories260K", "stories260K.gguf")
    model, tokenizer = load_model(str(gguf), dtype=torch.float32), load_tokenizer(str(gguf))
    tokenizer.chat_template = builtin_template("simple")  # '{{ bos_token }}User: ...' as the stories runs use
    folder = save_model_folder(
        model, tokenizer, tmp_path_factory.mktemp("stories") / "merged", gguf.parent / "tok512.model"
    )
    return folder, model, tokenizer


def text_ids(tokenizer) -> list[int]:
    return with_bos(tokenizer, encode(tokenizer, STORY))  # as tokenize_text trains a text row


def test_text_run_gets_the_space_prefix_and_chat_run_does_not(stories):
    from tunesmith.export.gguf import space_prefix

    folder, _, tokenizer = stories
    text = text_ids(tokenizer)
    assert tokenizer.convert_ids_to_tokens(text[:2]) == ["<s>", "\u2581Once"]  # HF: '▁' after the BOS id
    chat = prompt_ids(tokenizer, [{"role": "user", "content": STORY}])
    assert tokenizer.convert_ids_to_tokens(chat[1]).startswith("U")  # "<s>User:": no '▁' after BOS text
    assert space_prefix(folder, text) is True
    assert space_prefix(folder, chat) is False
    assert space_prefix(folder) is False  # no prompt: chat prompts assumed, as before


def with_space_prefix(source, tmp_path, value: bool):
    """A copy of the GGUF with add_space_prefix planted (the stories260K file carries no such key)."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(str(source))
    path = tmp_path / f"space-prefix-{int(value)}.gguf"
    writer = gguf.GGUFWriter(str(path), arch=reader.fields["general.architecture"].contents())
    details = {"tokenizer.ggml.add_space_prefix": MetadataDetails(gguf.GGUFValueType.BOOL, value)}
    copy_with_new_metadata(reader, writer, details, [])
    return path


@pytest.mark.parametrize("value", [True, False])
def test_wrong_space_prefix_fails_the_verdicts_tokenization_check(stories, tmp_path, value):
    """A text run's prompt (BOS as text for llama.cpp, as export writes it): only the key on gives HF's ids."""
    pytest.importorskip("llama_cpp")
    from tunesmith.export.parity import Prompt
    from tunesmith.export.verify import compare

    _, model, tokenizer = stories
    ids = text_ids(tokenizer)
    prompt = Prompt(ids, tokenizer.bos_token + STORY)
    gguf = with_space_prefix(shared_path("models", "stories260K", "stories260K.gguf"), tmp_path, value)
    report = compare(gguf, model, tokenizer, [prompt], 4)
    if value:
        assert report.passed and report.measured["tokenization_match_rate"] == 1.0
    else:  # the planted bug: llama.cpp reads "Once" as O,n,ce where training saw ▁Once
        assert not report.passed and report.measured["tokenization_match_rate"] == 0.0
        assert report.failures[0].startswith("tokenization: prompt 0: HF ids [1, 403, ")
        assert report.prompts[0].gguf_ids[:4] == [1, 441, 416, 331]
