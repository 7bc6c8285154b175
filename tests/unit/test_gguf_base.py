"""A base read from a GGUF (dequantized by transformers) is saved as a plain HF folder that reloads to the same
logits, with the SentencePiece file the converter needs beside it."""

from __future__ import annotations

from tests.conftest import shared_path


def test_gguf_loaded_model_saves_and_reloads_exactly(tmp_path):
    import torch

    from tunesmith.export.merge import save_model_folder
    from tunesmith.model.load import load_model, load_tokenizer

    gguf = shared_path("models", "stories260K", "stories260K.gguf")
    model, tokenizer = load_model(str(gguf), dtype=torch.float32), load_tokenizer(str(gguf))
    folder = save_model_folder(model, tokenizer, tmp_path / "saved", gguf.parent / "tok512.model")
    assert (folder / "tokenizer.model").read_bytes() == (gguf.parent / "tok512.model").read_bytes()
    assert "quantization_config" not in (folder / "config.json").read_text()
    ids = torch.tensor([[1, 400, 300, 20, 7]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        after = load_model(str(folder), dtype=torch.float32)(input_ids=ids).logits
    assert torch.equal(before, after)


def test_sentencepiece_file_is_found_for_a_gguf_base_beside_it(tmp_path):
    from tests.unit.run_fixtures_export import make_lora_run
    from tunesmith.export.merge import sentencepiece_file

    gguf = shared_path("models", "stories260K", "stories260K.gguf")
    run = make_lora_run(gguf, tmp_path / "run", chat_template="simple")
    assert sentencepiece_file(run) == gguf.parent / "tok512.model"
