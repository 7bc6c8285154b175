"""A run trained on tool rows is prompted the way it was trained: eval, `generate`, `chat` and export's parity
prompts pass the row's `tools` schemas into the chat template (Qwen2.5's own tool support), so the model sees
the schema it learned to call. Rows are shaped like LLaMA-Factory's glaive_toolcall demo (ShareGPT with a
`tools` JSON-string column) and OpenAI-style messages with `tool_calls` and `tools`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_path
from tests.unit.run_fixtures_export import make_lora_run
from tests.unit.test_data_tools import GLAIVE_ROW, OPENAI_ROW, SCHEMA
from tunesmith.data.formats import FormatSpec, to_internal
from tunesmith.data.tokenize import render, split_trailing_answer

DESCRIPTION = SCHEMA["description"]  # the schema's text that only the tools= rendering puts in the prompt


@pytest.fixture(scope="module")
def tool_run(tiny_qwen2, tmp_path_factory):
    """A finished LoRA run on tiny Qwen2 with Qwen2.5's template, its test split holding tool rows as the run's
    data preparation saves them (data/formats.py: tool calls and schemas normalized)."""
    from tunesmith.config.load import save_config
    from tunesmith.run_dir import RunDir, write_jsonl

    template = str(shared_path("chat_templates", "qwen2.5.jinja"))
    run_dir = make_lora_run(tiny_qwen2, tmp_path_factory.mktemp("tools") / "run", chat_template=template)
    rows = [to_internal(GLAIVE_ROW, FormatSpec("sharegpt")), to_internal(OPENAI_ROW, FormatSpec("messages"))]
    run = RunDir.of(run_dir)
    write_jsonl(run.split_file("test"), rows)
    config = run.config()
    config.eval.metrics = ["loss", "exact_match"]  # a generation metric: eval prompts the model
    save_config(config, run.config_file)
    return run_dir, rows


def expected_prompt(tokenizer, row: dict) -> str:
    """The prompt as training rendered it: every turn before the final answer, with the row's tools."""
    turns = split_trailing_answer(row["messages"])[0]
    return render(tokenizer, turns, add_generation_prompt=True, tools=row["tools"])


@pytest.fixture
def seen(monkeypatch):
    """Decoded prompts every loaded model is asked to continue (recorded at model.generate)."""
    import tunesmith.eval.evaluate as evaluate_module
    import tunesmith.generate.generate as generate_module

    prompts: list[str] = []
    real_load = generate_module.load_for_generation

    def load(*args, **kwargs):
        model, tokenizer = real_load(*args, **kwargs)
        real_generate = model.generate

        def record(input_ids, attention_mask=None, **options):
            for ids, mask in zip(input_ids, attention_mask):
                prompts.append(tokenizer.decode(ids[mask.bool()], skip_special_tokens=False))
            options["max_new_tokens"] = 2
            return real_generate(input_ids=input_ids, attention_mask=attention_mask, **options)

        model.generate = record
        return model, tokenizer

    monkeypatch.setattr(generate_module, "load_for_generation", load)
    monkeypatch.setattr(evaluate_module, "load_for_generation", load)
    return prompts


def run_tokenizer(run_dir):
    from tunesmith.model.from_run import load_tuned

    return load_tuned(run_dir)[1]


def test_eval_prompts_carry_the_rows_tool_schemas(tool_run, seen):
    from tunesmith.eval.evaluate import evaluate

    run_dir, rows = tool_run
    evaluate(run_dir, base=False)
    tokenizer = run_tokenizer(run_dir)
    assert seen == [expected_prompt(tokenizer, row) for row in rows]
    assert all(DESCRIPTION in prompt and "<tools>" in prompt for prompt in seen)


def test_planted_bug_tools_dropped_from_the_eval_prompt_is_caught(tool_run, seen, monkeypatch):
    """The check above fails when eval renders the prompt without the row's tools (the bug it guards)."""
    import tunesmith.generate.generate as generate_module
    from tunesmith.eval.evaluate import evaluate

    real = generate_module.prompt_ids
    monkeypatch.setattr(generate_module, "prompt_ids", lambda tok, messages, tools=None: real(tok, messages))
    run_dir, rows = tool_run
    evaluate(run_dir, base=False)
    tokenizer = run_tokenizer(run_dir)
    assert seen != [expected_prompt(tokenizer, row) for row in rows]
    assert not any(DESCRIPTION in prompt for prompt in seen)


def test_generate_prompts_file_rows_keep_their_tools(tool_run, seen, tmp_path):
    """A --prompts JSONL of glaive (ShareGPT + tools string) and OpenAI rows: each prompt renders its schemas."""
    from tunesmith.generate.generate import generate_from, read_prompts

    run_dir, rows = tool_run
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(GLAIVE_ROW) + "\n" + json.dumps(OPENAI_ROW) + "\n", encoding="utf-8")
    out = generate_from(run_dir, read_prompts(prompts), system="")
    assert seen == [expected_prompt(run_tokenizer(run_dir), row) for row in rows]
    assert [row["tools"] for row in out] == [rows[0]["tools"], rows[1]["tools"]]


def test_generate_and_chat_tools_file_offers_the_schemas(tool_run, seen, tmp_path, capsys):
    from tunesmith.cli.main import main
    from tunesmith.generate.chat import ChatSession
    from tunesmith.generate.generate import load_for_generation

    run_dir, rows = tool_run
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([SCHEMA]), encoding="utf-8")  # bare schemas, as the glaive tools column holds
    question = rows[0]["messages"][0]["content"]
    assert main(["generate", str(run_dir), "--prompt", question, "--tools", str(tools), "--max-new-tokens", "2"]) == 0
    model, tokenizer = load_for_generation(run_dir)
    session = ChatSession(model, tokenizer, tools=rows[0]["tools"])
    session.send(question)
    expected = render(tokenizer, [{"role": "user", "content": question}], True, tools=rows[0]["tools"])
    assert seen == [expected, expected]  # generate's, then chat's
    assert DESCRIPTION in expected


def test_a_bad_tools_file_is_one_clear_error(tool_run, tmp_path, capsys):
    from tunesmith.cli.main import main

    run_dir, _ = tool_run
    bad = tmp_path / "tools.json"
    bad.write_text("[{name: x}]", encoding="utf-8")
    assert main(["generate", str(run_dir), "--prompt", "hi", "--tools", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"--tools {bad}: 'tools' is not valid JSON" in err and "Traceback" not in err


def test_export_and_verify_parity_prompts_carry_the_tools(tool_run):
    """The GGUF's parity verdict is judged on the prompts the model was trained on, schemas included."""
    from tunesmith.data.tokenize import prompt_ids
    from tunesmith.export.export_run import verification_prompts
    from tunesmith.export.verify import run_prompts
    from tunesmith.run_dir import RunDir

    run_dir, rows = tool_run
    tokenizer = run_tokenizer(run_dir)
    for prompts in (
        verification_prompts(RunDir.of(run_dir), tokenizer, 2),
        run_prompts(RunDir.of(run_dir), tokenizer, 2),
    ):
        assert [p.text for p in prompts] == [expected_prompt(tokenizer, row) for row in rows]
        assert [p.ids for p in prompts] == [
            prompt_ids(tokenizer, split_trailing_answer(row["messages"])[0], row["tools"]) for row in rows
        ]


@pytest.mark.slow
def test_export_of_a_tool_run_passes_parity_on_the_schema_prompts(tool_run, tmp_path):
    """llama.cpp tokenizes and continues the schema-bearing prompts as HF does (the verdict over them passes)."""
    pytest.importorskip("llama_cpp")
    from tunesmith.export.export_run import export_run

    run_dir, _ = tool_run
    result = export_run(run_dir, gguf_types=["f32"], out_dir=tmp_path / "export")
    f32 = result.parity["f32"]
    assert f32.passed and f32.measured["tokenization_match_rate"] == 1.0 and len(f32.prompts) == 2
    assert all(DESCRIPTION in p.text for p in f32.prompts)
