"""Tool calling: LLaMA-Factory/glaive ShareGPT rows (function_call / observation turns + a `tools` column) and
OpenAI-style `tool_calls` / `tools` rows go through the chat template's own tool support (Qwen2.5, Llama 3.1);
loss on the assistant's calls and answers, never on the tool outputs."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_path
from tunesmith.data.formats import FormatSpec, to_internal
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_example

SCHEMA = {
    "name": "convert_currency",
    "description": "Convert an amount from one currency to another",
    "parameters": {
        "type": "object",
        "properties": {
            "amount": {"type": "number", "description": "The amount"},
            "from_currency": {"type": "string"},
            "to_currency": {"type": "string"},
        },
        "required": ["amount", "from_currency", "to_currency"],
    },
}
ARGS = {"amount": 500, "from_currency": "USD", "to_currency": "EUR"}
OUTPUT = '{"converted_amount": 425.5, "from_currency": "USD", "to_currency": "EUR"}'
ANSWER = "500 US dollars is about 425.50 euros."
# The shape LLaMA-Factory's dataset_info.json gives glaive_toolcall_*: sharegpt, columns {messages: conversations,
# tools: tools}; function_call values and the tools column are JSON strings.
GLAIVE_ROW = {
    "conversations": [
        {"from": "human", "value": "Convert 500 US dollars to euros, please."},
        {"from": "function_call", "value": json.dumps({"name": "convert_currency", "arguments": ARGS})},
        {"from": "observation", "value": OUTPUT},
        {"from": "gpt", "value": ANSWER},
    ],
    "tools": json.dumps([SCHEMA]),
}
OPENAI_ROW = {
    "messages": [
        {"role": "user", "content": "Convert 500 US dollars to euros, please."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "convert_currency", "arguments": json.dumps(ARGS)},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": OUTPUT},
        {"role": "assistant", "content": ANSWER},
    ],
    "tools": [{"type": "function", "function": SCHEMA}],
}
TEMPLATES = {"qwen2.5": ("qwen2.5.jinja", "<|im_end|>"), "llama3.1": ("llama3.1.jinja", "<|eot_id|>")}


def test_glaive_and_openai_rows_become_the_same_conversation():
    glaive = to_internal(GLAIVE_ROW, FormatSpec("sharegpt"))
    openai = to_internal(OPENAI_ROW, FormatSpec("messages"))
    call = {"type": "function", "function": {"name": "convert_currency", "arguments": ARGS}}  # arguments as an object
    assert glaive["messages"] == [
        {"role": "user", "content": "Convert 500 US dollars to euros, please."},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": OUTPUT},
        {"role": "assistant", "content": ANSWER},
    ]
    assert glaive["tools"] == openai["tools"] == [{"type": "function", "function": SCHEMA}]
    assert [m["role"] for m in openai["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert openai["messages"][1]["tool_calls"][0]["function"] == call["function"]


@pytest.fixture(scope="module")
def tokenizers():
    from tunesmith.model.tiny import build_tokenizer

    base = build_tokenizer(None, 1024)
    out = {}
    for name, (file, end) in TEMPLATES.items():
        tok = build_tokenizer(None, 1024) if out else base
        tok.add_special_tokens(
            {
                "bos_token": "<|begin_of_text|>",
                "eos_token": end,
                "additional_special_tokens": [
                    "<|im_start|>",
                    "<|im_end|>",
                    "<|start_header_id|>",
                    "<|end_header_id|>",
                    "<|eot_id|>",
                    "<|eom_id|>",
                ],
            }
        )
        tok.chat_template = shared_path("chat_templates", file).read_text()  # these upstream dumps are used as is
        out[name] = tok
    return out


def trained_and_prompt_text(tok, tokenized) -> tuple[list[str], str]:
    runs, current, prompt = [], [], []
    for tid, label in zip(tokenized.input_ids, tokenized.labels):
        if label != IGNORE_INDEX:
            current.append(tid)
        else:
            prompt.append(tid)
            if current:
                runs.append(tok.decode(current, skip_special_tokens=False))
                current = []
    if current:
        runs.append(tok.decode(current, skip_special_tokens=False))
    return runs, tok.decode(prompt, skip_special_tokens=False)


@pytest.mark.parametrize("row,fmt", [(GLAIVE_ROW, "sharegpt"), (OPENAI_ROW, "messages")], ids=["glaive", "openai"])
@pytest.mark.parametrize("name", list(TEMPLATES))
def test_tool_schema_in_the_prompt_loss_on_calls_and_answers_not_outputs(tokenizers, name, row, fmt):
    tok, end = tokenizers[name], TEMPLATES[name][1]
    example = to_internal(row, FormatSpec(fmt))
    tokenized = tokenize_example(tok, example)
    text = tok.decode(tokenized.input_ids, skip_special_tokens=False)
    assert text == tok.apply_chat_template(example["messages"], tools=example["tools"], tokenize=False)
    assert "Convert an amount from one currency to another" in text and '"required": ["amount"' in text.replace(
        "\n", ""
    ).replace("    ", "")
    runs, prompt = trained_and_prompt_text(tok, tokenized)
    call_args = json.dumps(ARGS)
    expected_call = {
        "qwen2.5": f'<tool_call>\n{{"name": "convert_currency", "arguments": {call_args}}}\n</tool_call>{end}',
        "llama3.1": f'{{"name": "convert_currency", "parameters": {call_args}}}{end}',
    }[name]
    assert [r.lstrip(" ") for r in runs] == [expected_call, ANSWER + end]
    # the tool's output (Llama 3.1 writes a string output with tojson, quoted) is in the prompt, never trained
    assert "converted_amount" in prompt and not any("converted_amount" in r for r in runs)


def test_preview_shows_the_call_trained_and_the_output_not(tokenizers):
    from tunesmith.data.preview import preview_example

    preview = preview_example(tokenizers["qwen2.5"], to_internal(GLAIVE_ROW, FormatSpec("sharegpt")))
    trained = "".join(text for text, flag in preview.pieces if flag)
    untrained = "".join(text for text, flag in preview.pieces if not flag)
    assert '"name": "convert_currency"' in trained and ANSWER in trained
    assert OUTPUT in untrained and "<tools>" in untrained and not preview.warnings


def test_data_check_accepts_both_tool_shapes(tmp_path):
    from tunesmith.data.check import check_paths

    (tmp_path / "glaive.json").write_text(json.dumps([GLAIVE_ROW]))
    (tmp_path / "openai.jsonl").write_text(json.dumps(OPENAI_ROW) + "\n")
    for name in ("glaive.json", "openai.jsonl"):
        result = check_paths([tmp_path / name])
        assert result.total == 0, [str(p) for p in result.problems]
    broken = dict(
        GLAIVE_ROW, conversations=[GLAIVE_ROW["conversations"][0], {"from": "function_call", "value": "convert(500)"}]
    )
    (tmp_path / "broken.json").write_text(json.dumps([broken]))
    (problem,) = check_paths([tmp_path / "broken.json"]).problems
    assert "turn 2: the function_call value is not JSON" in problem.message
