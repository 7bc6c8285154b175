"""Evaluation: answer-token loss, base vs tuned with deltas, outputs side by side, --compare, errors."""

from __future__ import annotations

import csv
import json
import math

import pytest

from tests.unit.run_fixtures_eval import make_run_dir
from tunesmith.cli.main import main
from tunesmith.data.synth import intent_dataset
from tunesmith.errors import DataError, TunesmithError
from tunesmith.eval.evaluate import evaluate, read_examples, to_item
from tunesmith.eval.loss import answer_loss
from tunesmith.run_dir import write_jsonl


@pytest.fixture(scope="module")
def run_dir(tiny_qwen2, tmp_path_factory):
    return make_run_dir(
        tmp_path_factory.mktemp("ev") / "run", tiny_qwen2, metrics=["loss", "json", "exact_match", "rouge"], n_test=4
    )


@pytest.fixture(scope="module")
def result(run_dir):
    return evaluate(run_dir)


def test_loss_is_mean_cross_entropy_over_answer_tokens(tiny_qwen2):
    import torch

    from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_example
    from tunesmith.model.load import load_model, load_tokenizer

    model, tokenizer = load_model(str(tiny_qwen2)), load_tokenizer(str(tiny_qwen2))
    examples = intent_dataset(3, seed=1)
    scores = answer_loss(model, tokenizer, examples, batch_size=2)
    # Reference: each example alone, labels shifted by hand, summed over answer tokens only.
    total, count = 0.0, 0
    for ex in examples:
        tok = tokenize_example(tokenizer, ex)
        with torch.no_grad():
            logits = model(torch.tensor([tok.input_ids])).logits[0]
        for t in range(1, len(tok.labels)):
            if tok.labels[t] != IGNORE_INDEX:
                total -= torch.log_softmax(logits[t - 1], -1)[tok.labels[t]].item()
                count += 1
    assert scores["loss_tokens"] == count
    assert scores["loss"] == pytest.approx(total / count, rel=1e-4)
    assert scores["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)


def test_every_metric_has_base_tuned_and_delta(result):
    assert result["models"] == ["base", "tuned"]
    assert result["examples"] == 4 and result["generated"] == 4
    expected = {
        "loss",
        "perplexity",
        "json_valid",
        "json_match",
        "json_field_intent",
        "json_field_slots",
        "json_field_accuracy",
        "exact_match",
        "rouge1",
        "rouge2",
        "rougeL",
    }
    assert set(result["metrics"]) == expected
    for name, row in result["metrics"].items():
        assert row["delta"] == pytest.approx(row["tuned"] - row["base"]), name
    # The adapter is random, so the tuned loss differs from the base loss.
    assert result["metrics"]["loss"]["base"] != pytest.approx(result["metrics"]["loss"]["tuned"])
    assert result["decoding"]["temperature"] == 0.0


def test_outputs_written_side_by_side(run_dir, result):
    eval_dir = run_dir / "eval"
    assert json.loads((eval_dir / "metrics.json").read_text()) == result
    rows = [json.loads(line) for line in (eval_dir / "outputs.jsonl").read_text().splitlines()]
    tests = [json.loads(line) for line in (run_dir / "data" / "test.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [t["messages"][1]["content"] for t in tests]
    assert [r["reference"] for r in rows] == [t["messages"][2]["content"] for t in tests]
    assert all({"base", "tuned", "messages"} <= set(r) for r in rows)
    with (eval_dir / "outputs.csv").open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["index", "prompt", "reference", "base", "tuned"]
    assert [t["tuned"] for t in table] == [r["tuned"] for r in rows]
    from openpyxl import load_workbook

    sheet = load_workbook(eval_dir / "outputs.xlsx").active
    assert [c.value for c in sheet[1]] == ["index", "prompt", "reference", "base", "tuned"]
    assert sheet.max_row == 5


def test_no_base_limit_and_data_file(run_dir, tmp_path):
    data = tmp_path / "more.jsonl"
    write_jsonl(data, [{"messages": ex["messages"], **ex["meta"]} for ex in intent_dataset(5, seed=9)])
    out = evaluate(run_dir, data=data, base=False, limit=2)
    assert out["models"] == ["tuned"] and out["examples"] == 2
    assert "delta" not in out["metrics"]["loss"]


def test_compare_other_run_on_same_prompts(run_dir, tiny_qwen2, tmp_path):
    other = make_run_dir(tmp_path / "other", tiny_qwen2, seed=5)
    out = evaluate(run_dir, base=False, compare=[other], limit=2)
    assert out["models"] == ["tuned", "other"]
    assert out["metrics"]["loss"]["other"] != pytest.approx(out["metrics"]["loss"]["tuned"])
    rows = [json.loads(line) for line in (run_dir / "eval" / "outputs.jsonl").read_text().splitlines()]
    assert "other" in rows[0]


def test_reference_column_and_text_rows():
    example = {
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "long answer #### 7"}],
        "meta": {"answer": 7},
    }
    item = to_item(example, "answer")
    assert item.prompt == example["messages"][:1] and item.reference == "7"
    assert to_item({"text": "plain", "meta": {}}, None).prompt is None
    grpo_row = {"messages": [{"role": "user", "content": "2+2?"}], "meta": {"answer": "#### 4"}}
    assert to_item(grpo_row, None, "answer").prompt == grpo_row["messages"]
    assert to_item(grpo_row, None, "answer").reference == "#### 4"
    assert to_item(grpo_row, None).prompt is None


def test_errors_are_clear(run_dir, tmp_path):
    with pytest.raises(DataError, match="no such test file"):
        read_examples(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: a row needs 'messages' or 'text'"):
        read_examples(bad)
    with pytest.raises(TunesmithError, match="not a tunesmith run directory"):
        evaluate(tmp_path)
    with pytest.raises(TunesmithError, match="--compare .*: not a run directory"):
        evaluate(run_dir, compare=[tmp_path], limit=1)


def test_cli_eval_prints_table(run_dir, capsys):
    assert main(["eval", str(run_dir), "--no-base", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "eval on 2 examples" in out and "json_valid" in out and "tuned" in out
