"""Every input format -> the internal shape; auto-detection explains itself; real LLaMA-Factory and GSM8K files load."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, shared_path
from tunesmith.config.load import load_config
from tunesmith.data.formats import FormatSpec, detect_format, require_no_nulls, to_internal
from tunesmith.data.splits import load_source, load_sources, prepare_splits
from tunesmith.errors import DataError

FIXTURES = REPO / "tests" / "fixtures" / "data"


def _load(path, **source):
    config = load_config(data={"data": {"sources": [{"path": str(path), **source}], "split": {"val": 0, "test": 0}}})
    examples, fmt, reason = load_source(config.data.sources[0], config)
    return examples, fmt, reason


def test_messages_with_system_and_tool_turns():
    examples, fmt, reason = _load(FIXTURES / "messages.jsonl")
    assert (fmt, reason) == ("messages", "messages: key 'messages' with role/content turns")
    roles = [m["role"] for m in examples[1]["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert examples[1]["messages"][1]["tool_calls"][0]["function"]["name"] == "weather"
    assert examples[1]["meta"] == {"id": 7}


def test_sharegpt_roles_and_system_column():
    examples, fmt, reason = _load(FIXTURES / "sharegpt.json")
    assert reason == "sharegpt: key 'conversations' with from/value turns"
    assert examples[0]["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    assert [m["role"] for m in examples[1]["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert examples[1]["messages"][0]["content"] == "Use tools."


def test_alpaca_input_system_and_history():
    examples, fmt, _ = _load(FIXTURES / "alpaca.json")
    assert fmt == "alpaca"
    assert examples[0]["messages"] == [
        {"role": "user", "content": "Translate to French\ncat"},
        {"role": "assistant", "content": "chat"},
    ]
    assert [m["content"] for m in examples[1]["messages"]] == [
        "You translate.",
        "Translate cat",
        "chat",
        "And dog?",
        "chien",
    ]


def test_prompt_completion_strings_and_message_lists():
    examples, fmt, _ = _load(FIXTURES / "prompt_completion.jsonl")
    assert fmt == "prompt_completion"
    assert examples[0]["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"},
    ]
    assert [m["role"] for m in examples[1]["messages"]] == ["system", "user", "assistant"]


def test_text_jsonl_and_txt_lines():
    examples, fmt, _ = _load(FIXTURES / "text.jsonl")
    assert fmt == "text" and examples[0]["text"] == "Once upon a time there was a fox."
    lines, _, _ = _load(FIXTURES / "plain.txt")
    assert [e["text"] for e in lines] == ["first line of text", "second line"]


def test_template_over_csv_columns_and_tsv_alpaca():
    # questions.csv has the columns of sentence-transformers/yahoo-answers, config title-question-pair
    template = {"user": "Ask a question", "assistant": "{title} {questions}"}
    examples, fmt, _ = _load(FIXTURES / "questions.csv", format="template", template=template)
    assert examples[0]["messages"][1]["content"] == "Pandas merge How do I merge two frames?"
    assert examples[0]["meta"] == {"title": "Pandas merge", "questions": "How do I merge two frames?"}
    tsv, fmt, _ = _load(FIXTURES / "alpaca.tsv")
    assert fmt == "alpaca" and tsv[0]["messages"][1]["content"] == "hi"


def test_columns_rename_and_system_prompt():
    examples, fmt, _ = _load(
        FIXTURES / "questions.csv",
        format="prompt_completion",
        columns={"prompt": "title", "completion": "questions"},
        system_prompt="Be kind.",
    )
    assert examples[1]["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Git undo"},
        {"role": "assistant", "content": "How to undo a commit?"},
    ]


def test_ambiguous_and_unknown_formats_are_errors():
    with pytest.raises(DataError, match=r"ambiguous format.*alpaca.*text"):
        _load(FIXTURES / "ambiguous.jsonl")
    with pytest.raises(DataError, match=r"cannot detect the format from the keys \['questions', 'title'\]"):
        _load(FIXTURES / "questions.csv")
    assert detect_format([{"question": "q", "answer": "a"}]) == (
        "prompt_completion",
        "prompt_completion: keys 'question' and 'answer'",
    )


def test_template_missing_column_names_it():
    spec = FormatSpec("template", template={"user": "{nope}", "assistant": "x"})
    with pytest.raises(DataError, match="template.user uses column 'nope'"):
        to_internal({"a": 1}, spec)


def test_template_missing_column_lists_present_ones_with_did_you_mean():
    # The recipe's old template against a real title-question-pair row of sentence-transformers/yahoo-answers.
    spec = FormatSpec("template", template={"user": "Ask a question", "assistant": "{title} {questionBody}"})
    row = {"title": "why is the sky blue?", "questions": "i saw it today and wondered"}
    with pytest.raises(DataError) as err:
        to_internal(row, spec)
    assert err.value.message == (
        "template.assistant uses column 'questionBody' which the row lacks; the row has: questions, title (did you mean 'questions'?)"
    )


def test_null_column_in_template_is_an_error_not_the_text_none():
    spec = FormatSpec("template", template={"user": "Ask a question", "assistant": "{title} {questions}"})
    with pytest.raises(DataError, match="column 'questions' is null"):
        to_internal({"title": "why?", "questions": None}, spec)


def test_null_alpaca_instruction_is_not_stringified():
    with pytest.raises(DataError, match=r"turn 1 \(user\): content is null"):  # never the text "None\nsome input"
        to_internal({"instruction": None, "input": "some input", "output": "ok"}, FormatSpec("alpaca"))
    with pytest.raises(DataError, match=r"turn 1 \(user\): content is null"):
        require_no_nulls({"messages": [{"role": "user", "content": None}]})


def test_weights_limit_sample_and_explicit_splits(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(f'{{"text": "a{i}"}}\n' for i in range(100)))
    b.write_text("".join(f'{{"text": "b{i}"}}\n' for i in range(100)))
    raw = {
        "run": {"seed": 3},
        "data": {
            "split": {"val": 0.1, "test": 0.1},
            "sources": [{"path": str(a), "weight": 3.0}, {"path": str(b), "weight": 1.0, "sample": 40}],
        },
    }
    splits = prepare_splits(load_config(data=raw))
    train = [e["text"] for e in splits["train"]]
    assert len(train) == 80 + 32  # train parts of 100 + 40 rows keep their total
    assert sum(t.startswith("a") for t in train) == 84 and sum(t.startswith("b") for t in train) == 28
    assert splits == prepare_splits(load_config(data=raw))  # seeded
    assert not set(train) & {e["text"] for e in splits["test"] + splits["val"]}
    raw["data"]["sources"] = [{"path": str(a), "limit": 10}, {"path": str(b), "use_as": "test", "limit": 5}]
    splits = prepare_splits(load_config(data=raw))
    assert [e["text"] for e in splits["test"]] == [f"b{i}" for i in range(5)]
    assert len(splits["train"]) + len(splits["val"]) == 10 and len(splits["val"]) == 1


def test_cleaning_rules(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [
        '{"text": "<b>Hello</b>   world &amp; more!!"}',
        '{"text": "<b>Hello</b>   world &amp; more!!"}',
        '{"text": "drop me SPAM"}',
        '{"text": "tiny"}',
    ]
    path.write_text("\n".join(rows) + "\n")
    clean = {
        "strip_html": True,
        "normalize_whitespace": True,
        "keep_chars": r"a-zA-Z0-9\s",
        "drop_regex": ["SPAM"],
        "min_chars": 5,
    }
    config = load_config(data={"data": {"sources": [{"path": str(path)}], "clean": clean}})
    (source,) = load_sources(config)
    assert [e["text"] for e in source.examples] == ["Hello world more"]  # keep_chars drops "&", then spaces collapse
    assert source.dropped == {"regex": 1, "min_chars": 1, "max_chars": 0, "duplicate": 1}


def test_llamafactory_alpaca_demo_directly_and_via_dataset_info():
    demo = shared_path("llamafactory", "alpaca_en_demo.json")
    info = shared_path("llamafactory", "dataset_info.json")
    direct, fmt, _ = _load(demo)
    assert fmt == "alpaca" and len(direct) == 999
    config = load_config(data={"data": {"sources": [{"dataset_info": str(info), "dataset": "alpaca_en_demo"}]}})
    via, fmt, reason = load_source(config.data.sources[0], config)
    assert via == direct and reason == f"alpaca: from entry 'alpaca_en_demo' of {info}"
    config = load_config(data={"data": {"sources": [{"dataset_info": str(info), "dataset": "c4_demo"}]}})
    text, fmt, _ = load_source(config.data.sources[0], config)
    assert fmt == "text" and len(text) == 300 and text[0]["text"].startswith("Don")


def test_gsm8k_loads_with_answer_in_meta():
    path = shared_path("gsm8k", "train.jsonl")
    examples, fmt, _ = _load(path)
    assert fmt == "prompt_completion" and len(examples) == 7473
    first = examples[0]
    assert first["messages"][0]["content"].startswith("Natalia sold clips")
    assert first["meta"]["answer"].endswith("#### 72") and first["messages"][1]["content"] == first["meta"]["answer"]


def test_sharegpt_tags_from_dataset_info(tmp_path):
    (tmp_path / "d.json").write_text(
        '[{"msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]'
    )
    (tmp_path / "dataset_info.json").write_text(
        '{"mine": {"file_name": "d.json", "formatting": "sharegpt", "columns": {"messages": "msgs"},'
        ' "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}'
    )
    config = load_config(
        data={"data": {"sources": [{"dataset_info": str(tmp_path / "dataset_info.json"), "dataset": "mine"}]}}
    )
    examples, fmt, _ = load_source(config.data.sources[0], config)
    assert fmt == "sharegpt" and examples[0]["messages"][1] == {"role": "assistant", "content": "yo"}


def test_parquet_file_and_folder_of_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"instruction": ["Add 2 and 3", "Name a colour"], "input": ["", ""], "output": ["5", "blue"]}
    pq.write_table(pa.table(rows), tmp_path / "alpaca.parquet")
    examples, fmt, _ = _load(tmp_path / "alpaca.parquet")
    assert fmt == "alpaca"
    assert examples[1]["messages"] == [
        {"role": "user", "content": "Name a colour"},
        {"role": "assistant", "content": "blue"},
    ]
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        pq.write_table(pa.table({"text": [f"part {i} row {j}" for j in range(3)]}), folder / f"part-{i}.parquet")
    examples, fmt, _ = _load(folder)
    assert fmt == "text" and sorted(e["text"] for e in examples) == sorted(
        f"part {i} row {j}" for i in range(2) for j in range(3)
    )
