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
    assert exact_match(["  Paris \n", "paris", "Rome"], ["Paris", "Paris", "Rome"]) == {
        "exact_match": pytest.approx(2 / 3)
    }


def test_json_scores_per_field_and_whole_object():
    ref = '{"intent":"set_alarm","slots":{"time":"6am"}}'
    assert json_scores(ref, ref) == {
        "json_valid": 1.0,
        "json_match": 1.0,
        "json_field_intent": 1.0,
        "json_field_slots": 1.0,
    }
    wrong_slot = '{"intent": "set_alarm", "slots": {"time": "7am"}}'
    assert json_scores(wrong_slot, ref) == {
        "json_valid": 1.0,
        "json_match": 0.0,
        "json_field_intent": 1.0,
        "json_field_slots": 0.0,
    }
    assert json_scores('{"intent": "set_alarm"', ref) == {
        "json_valid": 0.0,
        "json_match": 0.0,
        "json_field_intent": 0.0,
        "json_field_slots": 0.0,
    }


def test_json_metric_averages_and_respects_json_fields():
    refs = ['{"intent":"a","slots":{}}', '{"intent":"b","slots":{"x":"1"}}']
    preds = ['{"intent":"a","slots":{}}', '{"intent":"c","slots":{"x":"1"}}']
    scores = json_metric(preds, refs)
    assert scores == {
        "json_valid": 1.0,
        "json_match": 0.5,
        "json_field_intent": 0.5,
        "json_field_slots": 1.0,
        "json_field_accuracy": 0.75,
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
    assert numeric(["no number here", "#### 3"], ["#### 3", "#### 3"]) == {
        "numeric_accuracy": 0.5,
        "numeric_found": 0.5,
    }


# sacreBLEU's README example (two reference streams): "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ...)"
SACREBLEU_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
SACREBLEU_REFS = [
    ["The dog bit the man.", "The dog had bit the man."],
    ["It was not unexpected.", "No one was surprised."],
    ["The man bit him first.", "The man had bitten the dog."],
]


def bleu_reference_mismatches() -> list[str]:
    """Cases where `bleu` disagrees with sacreBLEU's documented or a hand-computed figure (0.005 absolute)."""
    cases = {
        "sacrebleu README": (bleu(SACREBLEU_SYS, SACREBLEU_REFS)["bleu"], 48.53),
        # p1..p4 = 6/6, 4/5, 3/4, 2/3; BP = exp(1 - 7/6): 100 * 0.4 ** 0.25 * exp(-1/6) = 67.32
        "hand": (bleu(["the cat sat on the mat"], ["the cat sat on the red mat"])["bleu"], 67.32),
        "identical": (bleu(["A b c d e."], ["A b c d e."])["bleu"], 100.0),
    }
    return [name for name, (got, want) in cases.items() if abs(got - want) > 0.005]


def test_bleu_is_sacrebleu_figure():
    assert bleu_reference_mismatches() == []


def test_bleu_on_whitespace_tokens_is_caught(monkeypatch):
    import sacrebleu

    real = sacrebleu.corpus_bleu
    monkeypatch.setattr(sacrebleu, "corpus_bleu", lambda hyps, refs: real(hyps, refs, tokenize="none"))
    assert bleu_reference_mismatches() == ["sacrebleu README"]  # punctuation stays glued to words


# ROUGE: rouge-score's README example (score(target, prediction) -> rouge1 P 0.75, R 0.667, F 0.70588;
# rougeL P 0.625, R 0.556, F 0.58824) and a pair where stemming matters:
# reference "The cats were running in the park" -> the cat were run in the park (7 tokens after Porter)
# prediction "a cat runs in parks"            -> a cat run in park (5 tokens)
#   ROUGE-1 overlap 4: P 4/5, R 4/7, F 2/3        (no stemming: only "in" -> F 1/6; recall 4/7)
#   ROUGE-2 overlap "run in": P 1/4, R 1/6, F 0.2 (no stemming: 0)
#   ROUGE-L LCS cat run in park: F 2/3
ROUGE_CASES = [
    (
        "The quick brown dog jumps on the log.",
        "The quick brown fox jumps over the lazy dog",
        {"rouge1": 0.70588, "rougeL": 0.58824},
    ),
    ("a cat runs in parks", "The cats were running in the park", {"rouge1": 2 / 3, "rouge2": 0.2, "rougeL": 2 / 3}),
]


def rouge_reference_mismatches() -> list[str]:
    """(case, metric) pairs where `rouge` differs from the figures above by more than 1e-4."""
    bad = []
    for i, (prediction, reference, want) in enumerate(ROUGE_CASES):
        got = rouge([prediction], [reference])
        bad += [f"{i}:{name}" for name, value in want.items() if abs(got[name] - value) > 1e-4]
    return bad


def test_rouge_f_measure_with_stemming_matches_references():
    assert rouge_reference_mismatches() == []


def _plant_rouge_scorer(monkeypatch, use_stemmer: bool = True, recall: bool = False):
    from rouge_score import rouge_scorer, scoring

    class Planted(rouge_scorer.RougeScorer):
        def __init__(self, types):
            super().__init__(types, use_stemmer=use_stemmer)

        def score(self, target, prediction):
            scores = super().score(target, prediction)
            return {k: scoring.Score(s.precision, s.recall, s.recall) for k, s in scores.items()} if recall else scores

    monkeypatch.setattr(rouge_scorer, "RougeScorer", lambda types, use_stemmer=True, **kw: Planted(types))


def test_rouge_recall_instead_of_f1_is_caught(monkeypatch):
    _plant_rouge_scorer(monkeypatch, recall=True)
    assert rouge_reference_mismatches() == ["0:rouge1", "0:rougeL", "1:rouge1", "1:rouge2", "1:rougeL"]


def test_rouge_without_stemming_is_caught(monkeypatch):
    _plant_rouge_scorer(monkeypatch, use_stemmer=False)
    assert rouge_reference_mismatches() == ["1:rouge1", "1:rouge2", "1:rougeL"]


@pytest.mark.parametrize(
    ("prediction", "reference", "score"),
    [
        ("The trip is 1,250 km long.", "#### 1250", 1.0),  # thousands separator, trailing unit
        ("It costs $1,234,567.50 in total", "1234567.5", 1.0),
        ("The temperature fell to -7 degrees C", "#### -7", 1.0),  # negative with a unit
        ("The temperature fell to \u22127 degrees", "#### -7", 1.0),  # typeset minus sign
        ("between 10-20 people, so 20", "#### 20", 1.0),
        ("Pages 10-20", "#### -20", 0.0),  # a range's dash is not a minus sign
        ("The answer is 72 apples, not 70.", "#### 72", 1.0),  # stated answer wins over the last number
        ("42%", "#### 42", 1.0),
        ("the answer is 7", "#### -7", 0.0),
        ("1,250", "#### 125", 0.0),
    ],
)
def test_numeric_adversarial(prediction, reference, score):
    assert numeric_score(prediction, reference) == score


def test_json_match_ignores_key_order_but_not_types():
    ref = '{"intent": "book", "slots": {"people": 2, "time": "19:00", "tags": ["a", "b"]}}'
    reordered = '{"slots": {"tags": ["a", "b"], "time": "19:00", "people": 2.0}, "intent": "book"}'
    assert json_scores(reordered, ref)["json_match"] == 1.0  # key order and 2 vs 2.0 do not matter
    for wrong in (
        '{"intent": "book", "slots": {"people": "2", "time": "19:00", "tags": ["a", "b"]}}',  # "2" is not 2
        '{"intent": "book", "slots": {"people": 2, "time": "19:00", "tags": ["b", "a"]}}',  # list order matters
        '{"intent": "book", "slots": {"people": 2, "time": "19:00", "tags": ["a", "b"], "x": null}}',  # extra key
    ):
        assert json_scores(wrong, ref) == {
            "json_valid": 1.0,
            "json_match": 0.0,
            "json_field_intent": 1.0,
            "json_field_slots": 0.0,
        }
    # Python's == says True == 1; JSON's true is not the number 1
    assert json_scores('{"ok": true, "n": 1}', '{"ok": 1, "n": true}') == {
        "json_valid": 1.0,
        "json_match": 0.0,
        "json_field_ok": 0.0,
        "json_field_n": 0.0,
    }
    assert json_scores('{"a": {"b": [1, {"c": false}]}}', '{"a": {"b": [1, {"c": 0}]}}')["json_match"] == 0.0


def test_custom_metric_from_file_and_module(tmp_path):
    file = tmp_path / "my_metrics.py"
    file.write_text(
        "def length_ratio(predictions, references, **columns):\n    return sum(len(p) for p in predictions) / sum(len(r) for r in references)\n"
    )
    label, metric = resolve_metric(f"{file}:length_ratio")
    assert label == "length_ratio"
    assert metric(["ab", "cd"], ["abcd", "abcd"]) == {"length_ratio": 0.5}
    label, metric = resolve_metric("tunesmith.scoring.metrics:exact_match")
    assert metric(["a"], ["a"]) == {"exact_match": 1.0}


def test_custom_metric_receives_columns(tmp_path):
    file = tmp_path / "by_intent.py"
    file.write_text(
        "def intent_seen(predictions, references, intent=None, **columns):\n"
        "    return {'intent_seen': sum(i in p for p, i in zip(predictions, intent)) / len(predictions)}\n"
    )
    _, metric = resolve_metric(f"{file}:intent_seen")
    assert metric(["set_alarm ok", "nope"], ["", ""], intent=["set_alarm", "volume"]) == {"intent_seen": 0.5}


def test_unknown_metric_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="unknown metric 'roug'"):
        resolve_metric("roug")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_metric(f"{tmp_path}/missing.py:fn")
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        resolve_metric("tunesmith.scoring.metrics:nope")
