"""The generated intent-to-JSON data set: seeded, balanced, answers are compact JSON matching the slots."""

from __future__ import annotations

import json

from tunesmith.data.synth import INTENTS, SYSTEM_PROMPT, intent_dataset, write_intent_dataset


def test_rows_are_seeded_and_in_internal_shape():
    rows = intent_dataset(50, seed=3)
    assert rows == intent_dataset(50, seed=3)
    assert rows != intent_dataset(50, seed=4)
    first = rows[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][0]["content"] == SYSTEM_PROMPT
    assert set(first["meta"]) == {"intent", "slots", "reference"}


def test_answers_are_compact_json_whose_slot_values_appear_in_the_utterance():
    for row in intent_dataset(200, seed=0):
        user, answer = row["messages"][1]["content"], row["messages"][2]["content"]
        parsed = json.loads(answer)
        assert answer == json.dumps(parsed, separators=(",", ":"))
        assert parsed == {"intent": row["meta"]["intent"], "slots": row["meta"]["slots"]}
        for value in parsed["slots"].values():
            assert value in user


def test_intents_are_balanced_and_varied():
    rows = intent_dataset(len(INTENTS) * 20, seed=0)
    counts = {name: sum(r["meta"]["intent"] == name for r in rows) for name in INTENTS}
    assert set(counts.values()) == {20}
    assert 8 <= len(INTENTS) <= 12
    assert len({r["messages"][1]["content"] for r in rows}) > 0.6 * len(rows)


def test_write_jsonl_messages_format(tmp_path):
    path = write_intent_dataset(tmp_path / "d" / "intent.jsonl", rows=12, seed=1, system_prompt=None)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 12
    assert [m["role"] for m in lines[0]["messages"]] == ["user", "assistant"]
    assert lines[0]["intent"] == json.loads(lines[0]["messages"][1]["content"])["intent"]
