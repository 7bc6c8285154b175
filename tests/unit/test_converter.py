"""llama.cpp's converter as tunesmith runs it: fetched once, and every failure a clear export error that names
the architecture and the converter's version (planted: an unsupported architecture, an unknown tokenizer,
an unreachable package index)."""

from __future__ import annotations

import json
import shutil

import pytest

from tunesmith.errors import ExportError

pytest.importorskip("llama_cpp", reason="needs the export extra: pip install 'tunesmith[export]'")


def version() -> str:
    from tunesmith.export.converter import llama_cpp_version

    return llama_cpp_version()


def copy_model(source, target, **config_changes):
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(config_changes)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.slow  # runs llama.cpp's converter in a subprocess (imports torch + transformers)
def test_unsupported_architecture_is_an_export_error_naming_it_and_the_converter(tiny_qwen2, tmp_path):
    from tunesmith.export.gguf import convert_to_gguf

    model = copy_model(tiny_qwen2, tmp_path / "m", architectures=["FooBarForCausalLM"])
    with pytest.raises(ExportError) as err:
        convert_to_gguf(model, tmp_path / "out.gguf", "f16")
    text = str(err.value)
    assert "FooBarForCausalLM" in text and f"llama-cpp-python {version()}" in text
    assert "convert_hf_to_gguf.py" in text and "Traceback" not in text


@pytest.mark.slow  # runs llama.cpp's converter in a subprocess (imports torch + transformers)
def test_unknown_vocabulary_with_an_unknown_split_rule_is_refused(tiny_qwen2, tmp_path):
    """A trained vocabulary whose split regex is none llama.cpp implements: no name is guessed for it."""
    from tunesmith.export.gguf import convert_to_gguf, split_rule_name

    model = copy_model(tiny_qwen2, tmp_path / "m")
    tok = json.loads((model / "tokenizer.json").read_text())
    tok["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\s+|."
    (model / "tokenizer.json").write_text(json.dumps(tok))
    assert split_rule_name(model) is None and split_rule_name(tiny_qwen2) == "qwen2"
    with pytest.raises(ExportError, match="pre-tokenizer was not recognized") as err:
        convert_to_gguf(model, tmp_path / "out.gguf", "f16")
    assert "Qwen2ForCausalLM" in str(err.value)


@pytest.mark.slow  # runs llama.cpp's converter in a subprocess (imports torch + transformers)
def test_trained_vocabulary_gets_its_split_rule_name_and_known_ones_keep_the_converters(tiny_qwen2, tmp_path):
    from gguf import GGUFReader

    from tunesmith.export.gguf import convert_to_gguf

    path = convert_to_gguf(tiny_qwen2, tmp_path / "out.gguf", "f16", name="tiny")
    fields = GGUFReader(str(path)).fields
    read = lambda key: bytes(fields[key].parts[fields[key].data[0]]).decode()  # noqa: E731
    assert read("tokenizer.ggml.pre") == "qwen2" and read("general.name") == "tiny"


def test_failed_fetch_is_an_export_error_with_what_to_do(tmp_path, monkeypatch):
    from tunesmith.export.converter import converter_dir

    monkeypatch.delenv("TUNESMITH_LLAMA_CPP", raising=False)
    monkeypatch.setenv("TUNESMITH_CONVERTER_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no package index reachable, as on an offline machine
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(ExportError) as err:
        converter_dir()
    text = str(err.value)
    assert f"cannot fetch llama.cpp's converter: `pip download llama-cpp-python=={version()}`" in text
    assert "TUNESMITH_LLAMA_CPP" in text and "--gguf none" in text
    assert not (tmp_path / "empty-cache" / "llama.cpp-converter" / version()).exists()


def test_llama_cpp_checkout_override_must_hold_the_converter(tmp_path, monkeypatch):
    from tunesmith.export.converter import converter_dir

    monkeypatch.setenv("TUNESMITH_LLAMA_CPP", str(tmp_path))
    with pytest.raises(ExportError, match="no convert_hf_to_gguf.py there"):
        converter_dir()
