"""Pure metric functions: hand-computed ROUGE, JSON field scoring, numeric extraction on real GSM8K lines."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_path
from tunesmith.errors import ConfigError
from tunesmith.scoring.extract import extract_json, extract_number
from tunesmith.scoring.metrics import (
    bleu,
    exact_match,
    json_metric,
    json_scores,
    numeric,
    numeric_score,
    parse_json_strict,
    resolve_metric,
    rouge,
)


def test_rouge_matches_hand_computed_example():
    # reference: "the cat sat on the mat" (6 tokens), prediction: "the cat lay on the mat" (6 tokens)
    # ROUGE-1: overlap (the x2, cat, on, mat) = 5 -> P = R = 5/6 -> F1 = 5/6
    # ROUGE-2: ref bigrams {the cat, cat sat, sat on, on the, the mat}; pred {the cat, cat lay, lay on, on the, the mat}
    #          overlap 3 of 5 -> F1 = 0.6
    # ROUGE-L: LCS "the cat on the mat" = 5 -> F1 = 5/6
    scores = rouge(["the cat lay on the mat"], ["the cat sat on the mat"])
    assert scores["rouge1"] == pytest.approx(5 / 6)
    assert scores["rouge2"] == pytest.approx(0.6)
    assert scores["rougeL"] == pytest.approx(5 / 6)


def test_rouge_averages_over_examples():
    scores = rouge(["a b c d", "x y"], ["a b c d", "p q"])
    assert scores == {"rouge1": pytest.approx(0.5), "rouge2": pytest.approx(0.5), "rougeL": pytest.approx(0.5)}


def test_exact_match_normalises_whitespace_only():
    assert exact_match(["  Paris \n", "paris", "Rome"], ["Paris", "Paris", "Rome"]) == {"exact_match": pytest.approx(2 / 3)}


def test_json_scores_per_field_and_whole_object():
    ref = '{"intent":"set_alarm","slots":{"time":"6am"}}'
    assert json_scores(ref, ref) == {"json_valid": 1.0, "json_match": 1.0, "json_field_intent": 1.0, "json_field_slots": 1.0}
    wrong_slot = '{"intent": "set_alarm", "slots": {"time": "7am"}}'
    assert json_scores(wrong_slot, ref) == {"json_valid": 1.0, "json_match": 0.0, "json_field_intent": 1.0, "json_field_slots": 0.0}
    assert json_scores('{"intent": "set_alarm"', ref) == {"json_valid": 0.0, "json_match": 0.0, "json_field_intent": 0.0, "json_field_slots": 0.0}


def test_json_metric_averages_and_respects_json_fields():
    refs = ['{"intent":"a","slots":{}}', '{"intent":"b","slots":{"x":"1"}}']
    preds = ['{"intent":"a","slots":{}}', '{"intent":"c","slots":{"x":"1"}}']
    scores = json_metric(preds, refs)
    assert scores == {
        "json_valid": 1.0, "json_match": 0.5, "json_field_intent": 0.5, "json_field_slots": 1.0, "json_field_accuracy": 0.75,
    }
    only_intent = json_metric(preds, refs, json_fields=["intent"])
    assert "json_field_slots" not in only_intent and only_intent["json_field_intent"] == 0.5


def test_json_validity_is_strict_but_allows_a_fence():
    assert parse_json_strict('```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_json_strict('Sure! {"a": 1}') is None
    assert extract_json('Sure! {"a": 1}') == {"a": 1}  # the lenient extractor GRPO rewards use still finds it


def test_numeric_extraction_on_real_gsm8k_answers():
    path = shared_path("gsm8k", "train.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()[:200]]
    for row in rows:
        final = row["answer"].split("####")[-1].strip().replace(",", "")
        assert extract_number(row["answer"]) == pytest.approx(float(final)), row["answer"]
    # The first GSM8K answer: 'Natalia sold 48/2 = <<48/2=24>>24 clips ... #### 72'
    assert extract_number(rows[0]["answer"]) == 72
    answers = [r["answer"] for r in rows[:10]]
    said = [f"Let me think. The answer is {r['answer'].split('####')[-1].strip()}." for r in rows[:10]]
    assert numeric(said, answers) == {"numeric_accuracy": 1.0, "numeric_found": 1.0}


def test_numeric_styles_and_misses():
    assert numeric_score("so the answer is 1,250.", "#### 1250") == 1.0
    assert numeric_score("#### 72", "#### 72.0") == 1.0
    assert numeric_score("the answer is 71", "#### 72") == 0.0
    assert numeric(["no number here", "#### 3"], ["#### 3", "#### 3"]) == {"numeric_accuracy": 0.5, "numeric_found": 0.5}


def test_bleu_perfect_and_disjoint():
    assert bleu(["the cat sat on the mat today"], ["the cat sat on the mat today"])["bleu"] == pytest.approx(1.0)
    assert bleu(["dog runs fast"], ["the cat sat on the mat today"])["bleu"] < 0.05


def test_custom_metric_from_file_and_module(tmp_path):
    file = tmp_path / "my_metrics.py"
    file.write_text("def length_ratio(predictions, references, **columns):\n    return sum(len(p) for p in predictions) / sum(len(r) for r in references)\n")
    label, metric = resolve_metric(f"{file}:length_ratio")
    assert label == "length_ratio"
    assert metric(["ab", "cd"], ["abcd", "abcd"]) == {"length_ratio": 0.5}
    label, metric = resolve_metric("tunesmith.scoring.metrics:exact_match")
    assert metric(["a"], ["a"]) == {"exact_match": 1.0}


def test_custom_metric_receives_columns(tmp_path):
    file = tmp_path / "by_intent.py"
    file.write_text("def intent_seen(predictions, references, intent=None, **columns):\n"
                    "    return {'intent_seen': sum(i in p for p, i in zip(predictions, intent)) / len(predictions)}\n")
    _, metric = resolve_metric(f"{file}:intent_seen")
    assert metric(["set_alarm ok", "nope"], ["", ""], intent=["set_alarm", "volume"]) == {"intent_seen": 0.5}


def test_unknown_metric_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="unknown metric 'roug'"):
        resolve_metric("roug")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_metric(f"{tmp_path}/missing.py:fn")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        resolve_metric("tunesmith.scoring.metrics:nope")
