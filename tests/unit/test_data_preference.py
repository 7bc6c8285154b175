"""Preference data: every shape detected and converted, every bad row reported as FILE:LINE, method fit checked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, shared_path
from tunesmith.config.load import load_config
from tunesmith.data.check import check_config, check_paths
from tunesmith.data.clean import all_texts, content_key
from tunesmith.data.splits import load_source, prepare_splits
from tunesmith.errors import DataError

FIXTURES = REPO / "tests" / "fixtures" / "data" / "preference"


def _load(path, **source):
    config = load_config(data={"data": {"sources": [{"path": str(path), **source}], "split": {"val": 0, "test": 0}}})
    return load_source(config.data.sources[0], config)


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_llamafactory_sharegpt_pairs():
    examples, fmt, reason = _load(FIXTURES / "llamafactory_sharegpt.json")
    assert (fmt, reason) == ("preference", "preference: keys 'chosen' and 'rejected'")
    assert examples[1]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert examples[1]["chosen"] == [{"role": "assistant", "content": "4"}]
    assert examples[1]["rejected"] == [{"role": "assistant", "content": "5"}]
    assert examples[1]["messages"] == examples[1]["prompt"] + examples[1]["chosen"]  # what eval/export prompts read


def test_trl_strings_message_lists_and_implicit_prompt():
    examples, fmt, _ = _load(FIXTURES / "trl.jsonl")
    assert fmt == "preference"
    assert examples[0]["prompt"] == [{"role": "user", "content": "The sky is"}]
    assert examples[0]["chosen"] == [{"role": "assistant", "content": " blue."}]
    assert examples[1]["rejected"] == [{"role": "assistant", "content": "It is green."}]
    # implicit prompt: chosen and rejected are whole conversations sharing the user turn
    assert examples[2]["prompt"] == [{"role": "user", "content": "What colour is grass?"}]
    assert (examples[2]["chosen"][0]["content"], examples[2]["rejected"][0]["content"]) == ("Green.", "Blue.")


def test_kto_unpaired_rows_and_system_prompt():
    examples, fmt, reason = _load(FIXTURES / "kto.jsonl", system_prompt="Be kind.")
    assert fmt == "unpaired_preference" and "label" in reason
    assert [e["label"] for e in examples] == [True, False, True]
    assert examples[1]["prompt"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    assert examples[1]["completion"] == [{"role": "assistant", "content": "Go away."}]
    assert examples[2]["completion"] == [{"role": "assistant", "content": "You're welcome."}]


def test_llamafactory_dataset_info_entries(tmp_path):
    """The real dataset_info.json entries (dpo_en_demo: sharegpt ranking; kto_en_demo: OpenAI roles + kto_tag)
    read rows written in exactly their shape."""
    info = json.loads(shared_path("llamafactory", "dataset_info.json").read_text())
    dpo, kto = dict(info["dpo_en_demo"]), dict(info["kto_en_demo"])
    dpo["file_name"], kto["file_name"] = "pairs.json", "kto.json"
    (tmp_path / "dataset_info.json").write_text(json.dumps({"pairs": dpo, "kto": kto}))
    (tmp_path / "pairs.json").write_text(
        json.dumps(
            [
                {
                    "conversations": [{"from": "human", "value": "Say hi"}],
                    "chosen": {"from": "gpt", "value": "Hi!"},
                    "rejected": {"from": "gpt", "value": "No."},
                }
            ]
        )
    )
    (tmp_path / "kto.json").write_text(
        json.dumps(
            [
                {
                    "messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}],
                    "label": True,
                },
                {
                    "messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "No."}],
                    "label": False,
                },
            ]
        )
    )
    info_path = str(tmp_path / "dataset_info.json")
    pairs, fmt, reason = _load_entry(info_path, "pairs")
    assert fmt == "preference" and "entry 'pairs'" in reason
    assert pairs[0]["prompt"] == [{"role": "user", "content": "Say hi"}] and pairs[0]["rejected"][0]["content"] == "No."
    rows, fmt, _ = _load_entry(info_path, "kto")
    assert fmt == "unpaired_preference"
    assert [(r["completion"][0]["content"], r["label"]) for r in rows] == [("Hi!", True), ("No.", False)]


def _load_entry(info_path, name):
    config = load_config(data={"data": {"sources": [{"dataset_info": info_path, "dataset": name}]}})
    return load_source(config.data.sources[0], config)


BAD_PAIRS = [
    (2, "missing key 'rejected' (format preference)"),
    (3, "chosen is empty"),
    (4, "chosen and rejected are identical: the pair teaches nothing"),
    (5, "chosen and rejected have different prompts (turn 1 differs): both must answer the same prompt"),
    (6, "rejected is missing (null or no key): a pair needs both answers"),
    (7, "chosen is empty: no assistant answer after the prompt"),
]


def test_bad_pairs_file_line_messages():
    result = check_paths([FIXTURES / "bad_pairs.jsonl"])
    assert [(p.line, p.message) for p in result.problems] == BAD_PAIRS


def test_bad_labels_and_one_class():
    result = check_paths([FIXTURES / "bad_kto.jsonl"])
    assert [(p.line, p.kind) for p in result.problems] == [
        (2, "non-boolean-label"),
        (3, "non-boolean-label"),
        (1, "one-label-class"),
    ]
    assert result.problems[0].message == 'label is "yes" (a string), expected true or false'
    assert (
        result.problems[2].message
        == "every labelled row (1) has label true: KTO needs both classes, add rows labelled false (undesirable)"
    )


def test_label_classes_counted_across_files(tmp_path):
    """Desirable and undesirable rows in two files of one config are fine; drop one file and the check fires."""
    good = _write_jsonl(
        tmp_path / "good.jsonl",
        [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "label": True}],
    )
    bad = _write_jsonl(
        tmp_path / "bad.jsonl",
        [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}], "label": False}],
    )
    both = load_config(
        data={
            "method": "kto",
            "model": {"name_or_path": "tiny:qwen2"},
            "data": {"sources": [{"path": str(good)}, {"path": str(bad)}]},
        }
    )
    assert check_config(both).total == 0
    one = load_config(
        data={"method": "kto", "model": {"name_or_path": "tiny:qwen2"}, "data": {"sources": [{"path": str(good)}]}}
    )
    assert [p.kind for p in check_config(one).problems] == ["one-label-class"]


def test_cli_exit_1_file_line_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "data", "check", str(FIXTURES / "bad_pairs.jsonl")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    path = FIXTURES / "bad_pairs.jsonl"
    assert proc.stdout.splitlines()[: len(BAD_PAIRS)] == [f"{path}:{line}: {message}" for line, message in BAD_PAIRS]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["llamafactory_sharegpt.json", "openai_roles.jsonl", "trl.jsonl", "kto.jsonl"])
def test_good_files_say_which_methods_fit(name):
    result = check_paths([FIXTURES / name])
    assert result.total == 0
    expected = "for method kto" if name == "kto.jsonl" else "for method dpo, orpo, simpo, kto"
    assert expected in result.summary()


def test_preference_data_under_sft_is_caught(tmp_path):
    """`data check` on a method-sft config names the methods that fit; training refuses before the model loads."""
    data = {"model": {"name_or_path": "tiny:qwen2"}, "data": {"sources": [{"path": str(FIXTURES / "trl.jsonl")}]}}
    result = check_config(load_config(data=data))
    assert [(p.line, p.kind) for p in result.problems] == [(1, "method-mismatch")]
    assert "set method: dpo or orpo or simpo or kto" in result.problems[0].message
    with pytest.raises(DataError, match="preference pairs .* method 'sft'"):
        prepare_splits(load_config(data=data))
    assert check_config(load_config(data={**data, "method": "dpo"})).total == 0


def test_sft_data_under_dpo_is_caught():
    data = {
        "method": "dpo",
        "model": {"name_or_path": "tiny:qwen2"},
        "data": {"sources": [{"path": str(REPO / "tests/fixtures/data/messages.jsonl")}]},
    }
    result = check_config(load_config(data=data))
    assert [p.kind for p in result.problems] == ["method-mismatch"]
    assert "method 'dpo' trains on preference data" in result.problems[0].message


def test_cleaning_and_dedup_see_rejected_answers():
    a = {
        "prompt": [{"role": "user", "content": "q"}],
        "chosen": [{"role": "assistant", "content": "x"}],
        "rejected": [{"role": "assistant", "content": "y"}],
    }
    b = {**a, "rejected": [{"role": "assistant", "content": "z"}]}
    assert content_key(a) != content_key(b)  # same prompt and chosen, other rejected: not a duplicate
    assert all_texts(a) == ["q", "x", "y"]  # cleaning filters see the rejected answer too


def test_preview_marks_chosen_and_rejected_answers(tiny_qwen2):
    from tunesmith.data.preview import as_brackets, preview_target

    previews = preview_target(str(FIXTURES / "trl.jsonl"), n=2, model=str(tiny_qwen2))
    assert [(p.number, p.part) for p in previews] == [(1, "chosen"), (1, "rejected"), (2, "chosen"), (2, "rejected")]
    assert "[It is blue.<|im_end|>]" in as_brackets(previews[2]) and "[It is green.<|im_end|>]" in as_brackets(
        previews[3]
    )
    assert "[" not in as_brackets(previews[2]).split("assistant")[0]  # the prompt gets no loss


def test_eval_data_rows_get_the_system_prompt_in_their_scored_prompt():
    from tunesmith.eval.evaluate import with_system

    user, good = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}
    row = {
        "prompt": [user],
        "chosen": [good],
        "rejected": [{"role": "assistant", "content": "go"}],
        "messages": [user, good],
    }
    out = with_system(row, "Be kind.")
    assert out["prompt"][0] == {"role": "system", "content": "Be kind."} and out["prompt"][1:] == [user]
    assert out["messages"][0]["role"] == "system" and out["chosen"] == [good]
    assert row["prompt"] == [user]  # the file's row itself is left as read
    assert with_system(out, "Other.")["prompt"][0]["content"] == "Be kind."  # an own system turn is kept
