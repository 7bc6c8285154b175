"""Export units: the missing-extra message, unsupported architectures, Modelfile translation of chat templates."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import shared_path
from tests.unit.run_fixtures_export import make_lora_run
from tunesmith.errors import ExportError
from tunesmith.export.ollama import go_template, modelfile, turn_format
from tunesmith.model.templates import builtin_template

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Two plus two?"},
]


@pytest.fixture
def qwen_tokenizer(tiny_qwen2):
    from tunesmith.model.load import load_tokenizer

    return load_tokenizer(str(tiny_qwen2))


def test_gguf_without_llama_cpp_says_what_to_install(tiny_qwen2, tmp_path, monkeypatch):
    from tunesmith.export.export_run import export_run

    run = make_lora_run(tiny_qwen2, tmp_path / "run")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(ExportError) as err:
        export_run(run, gguf_types=["f16"])
    text = str(err.value)
    assert "need llama-cpp-python, which is not installed" in text
    assert "pip install 'tunesmith[export]'" in text and "pip install 'llama-cpp-python>=0.3.9,<0.4'" in text
    assert not (run / "export" / "merged").exists()  # failed before the slow steps


def test_chatml_modelfile_matches_training_template(qwen_tokenizer):
    text, fmt = modelfile("run-f16.gguf", qwen_tokenizer, "Be brief.", 512, add_bos=False)
    assert fmt.family == "chatml" and fmt.exact
    assert text.startswith("FROM ./run-f16.gguf\n")
    assert (
        'TEMPLATE """{{ range .Messages }}{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}<|im_end|>\n'
        '{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n'
        '{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}<|im_end|>\n'
        '{{ end }}{{ end }}<|im_start|>assistant\n"""'
    ) in text
    assert 'SYSTEM """Be brief."""' in text
    stops = [line for line in text.splitlines() if line.startswith("PARAMETER stop")]
    assert stops == ['PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|im_start|>"']
    expected = qwen_tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert fmt.render(CONVERSATION) == expected


def test_llama3_modelfile_matches_training_template(qwen_tokenizer):
    qwen_tokenizer.chat_template = builtin_template("llama3")
    text, fmt = modelfile("run-q8_0.gguf", qwen_tokenizer, None, 512, add_bos=False)
    assert fmt.family == "llama3" and fmt.exact
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    assert go_template(fmt) == (
        '{{ range .Messages }}{{ if eq .Role "system" }}' + header.format("system") + "{{ .Content }}<|eot_id|>"
        '{{ else if eq .Role "user" }}' + header.format("user") + "{{ .Content }}<|eot_id|>"
        '{{ else if eq .Role "assistant" }}' + header.format("assistant") + "{{ .Content }}<|eot_id|>"
        "{{ end }}{{ end }}" + header.format("assistant")
    )
    assert "SYSTEM" not in text and text.startswith("FROM ./run-q8_0.gguf\n")
    assert [line for line in text.splitlines() if line.startswith("PARAMETER stop")] == [
        'PARAMETER stop "<|eot_id|>"',
        'PARAMETER stop "<|im_end|>"',
    ]
    expected = qwen_tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert fmt.render(CONVERSATION) == expected


def test_real_llama3_template_translates_exactly(qwen_tokenizer):
    raw = shared_path("chat_templates", "llama3.jinja").read_text()
    qwen_tokenizer.chat_template = raw.replace("    ", "").replace("\n", "")  # the collection's documented strip rule
    fmt = turn_format(qwen_tokenizer)
    assert fmt.family == "llama3" and fmt.exact and fmt.suffix["assistant"] == "<|eot_id|>"


def test_position_dependent_template_is_flagged_approximated(qwen_tokenizer):
    # Qwen3 drops <think> blocks from earlier assistant turns only: a turn's text depends on its position
    qwen_tokenizer.chat_template = shared_path("chat_templates", "qwen3.jinja").read_text()
    text, fmt = modelfile("m.gguf", qwen_tokenizer, None, 512, add_bos=False)
    assert fmt.family == "chatml" and not fmt.exact
    assert any("depending on their position" in note for note in fmt.notes)
    assert "# chat template family: chatml (APPROXIMATED:" in text


def test_qwen25_default_system_prompt_is_exact_through_system(qwen_tokenizer):
    qwen_tokenizer.chat_template = shared_path("chat_templates", "qwen2.5.jinja").read_text()
    text, fmt = modelfile("m.gguf", qwen_tokenizer, None, 512, add_bos=False)
    assert fmt.exact and 'SYSTEM """You are Qwen, created by Alibaba Cloud. You are a helpful assistant."""' in text


def test_bos_added_by_llama_cpp_is_not_repeated_in_template(qwen_tokenizer):
    qwen_tokenizer.chat_template = builtin_template("simple")
    qwen_tokenizer.bos_token = "<|endoftext|>"
    fmt = turn_format(qwen_tokenizer)
    assert fmt.preamble == "<|endoftext|>" and fmt.exact
    assert go_template(fmt, drop_bos="<|endoftext|>").startswith("{{ range .Messages }}")
    assert go_template(fmt).startswith("<|endoftext|>{{ range .Messages }}")


def test_cli_export_of_a_non_run_folder_is_a_clear_error(tmp_path, capsys):
    from tunesmith.cli.main import main

    assert main(["export", str(tmp_path)]) == 2
    assert "not a tunesmith run directory (no config.yaml)" in capsys.readouterr().err


def test_unknown_gguf_type_is_a_usage_error():
    from tunesmith.errors import ConfigError
    from tunesmith.export.export_run import _gguf_types

    with pytest.raises(ConfigError, match="unknown GGUF type") as info:
        _gguf_types(["f16", "q3_x"])
    assert info.value.exit_code == 2
    assert _gguf_types(["F16", "none", "f16", "q8_0"]) == ["f16", "q8_0"]


SMOLLM_TEMPLATE = (  # SmolLM2-Instruct's chat template: a default system turn only when the chat has none
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_a_default_system_turn_becomes_the_modelfile_system(qwen_tokenizer):
    qwen_tokenizer.chat_template = SMOLLM_TEMPLATE
    text, fmt = modelfile("m.gguf", qwen_tokenizer, None, 512, add_bos=False)
    assert fmt.exact and fmt.preamble == "" and "APPROXIMATED" not in text
    assert fmt.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    for conversation in (CONVERSATION, CONVERSATION[1:]):  # Ollama injects SYSTEM only when no system message
        expected = qwen_tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        assert fmt.render(conversation) == expected
    run_prompt, _ = modelfile("m.gguf", qwen_tokenizer, "Be brief.", 512, add_bos=False)
    assert 'SYSTEM """Be brief."""' in run_prompt and "SmolLM" not in run_prompt  # the run's own prompt wins


def test_a_planted_always_written_system_turn_is_not_taken_for_a_default(qwen_tokenizer):
    """A template that writes its fixed system turn even before a given one is not the default-system pattern."""
    qwen_tokenizer.chat_template = "{{ '<|im_start|>system\\nFixed.<|im_end|>\\n' }}" + SMOLLM_TEMPLATE.replace(
        "{% if loop.first and messages[0]['role'] != 'system' %}", "{% if false %}"
    )
    fmt = turn_format(qwen_tokenizer)
    assert fmt.default_system is None and fmt.exact


def test_every_modelfile_comment_stays_one_line(qwen_tokenizer):
    """Notes holding newlines (a jinja error quoting the template) must not leak lines Ollama would parse."""
    qwen_tokenizer.chat_template = "{{ raise_exception('no\\nway') }}"
    text, fmt = modelfile("m.gguf", qwen_tokenizer, None, 512, add_bos=False)
    assert not fmt.exact and any("\n" in note for note in fmt.notes)
    keywords = ("FROM", "TEMPLATE", "SYSTEM", "PARAMETER", "ADAPTER", "#", '"""', "{{", "<|")
    assert all(not line or line.startswith(keywords) for line in text.splitlines()), text
