"""A generated intent-to-JSON data set: short utterances -> `{"intent": ..., "slots": {...}}`.

Small enough for a tiny model to learn on a CPU in minutes, real enough to show what evaluation measures:
JSON validity, intent accuracy (json_field_intent), slot accuracy and whole-object match.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM_PROMPT = "Reply with the intent and slots as JSON."

SLOT_VALUES: dict[str, list[str]] = {
    "time": ["6am", "7am", "8am", "9am", "noon", "5pm", "6pm", "7pm", "8pm", "9pm", "10pm", "midnight"],
    "city": [
        "paris",
        "rome",
        "tokyo",
        "berlin",
        "london",
        "oslo",
        "lima",
        "cairo",
        "madrid",
        "seoul",
        "dublin",
        "quito",
    ],
    "day": ["today", "tomorrow", "monday", "friday", "sunday", "tonight"],
    "genre": ["jazz", "rock", "pop", "blues", "techno", "folk", "soul", "metal", "reggae", "disco"],
    "people": ["2", "3", "4", "5", "6", "7", "8"],
    "amount": ["20", "50", "75", "100", "120", "250", "300", "500", "800", "1000"],
    "account": ["savings", "checking", "travel"],
    "minutes": ["2", "5", "10", "15", "20", "25", "30", "45"],
    "name": ["anna", "ben", "carl", "dina", "eva", "omar", "lena", "tom", "maya", "raj", "sara", "ivan"],
    "item": ["milk", "eggs", "bread", "apples", "rice", "tea", "butter", "cheese", "pasta", "coffee", "lemons"],
    "room": ["kitchen", "bedroom", "office", "hall", "garage", "bathroom", "porch"],
    "level": ["up", "down"],
}

# intent -> templates; {slot} fills from SLOT_VALUES, and every slot used appears in the answer.
INTENTS: dict[str, list[str]] = {
    "set_alarm": [
        "set an alarm for {time}",
        "wake me up at {time}",
        "alarm at {time} please",
        "i need an alarm for {time}",
        "can you wake me at {time}",
    ],
    "get_weather": [
        "weather in {city} {day}",
        "will it rain in {city} {day}",
        "how hot is {city} {day}",
        "forecast for {city} {day}",
        "is it cold in {city} {day}",
    ],
    "play_music": [
        "play some {genre}",
        "put on {genre} music",
        "i want to hear {genre}",
        "start a {genre} playlist",
        "play {genre} in the {room}",
    ],
    "book_table": [
        "book a table for {people} at {time}",
        "table for {people} at {time}",
        "reserve dinner for {people} at {time}",
        "get us a table for {people} at {time}",
    ],
    "transfer_money": [
        "send {amount} dollars to {account}",
        "move {amount} to my {account} account",
        "transfer {amount} to {account}",
        "put {amount} into {account}",
    ],
    "set_timer": [
        "set a timer for {minutes} minutes",
        "timer {minutes} minutes",
        "count down {minutes} minutes",
        "remind me in {minutes} minutes",
    ],
    "call_contact": [
        "call {name}",
        "phone {name} now",
        "ring {name} please",
        "give {name} a call",
        "can you call {name} {day}",
    ],
    "add_to_list": [
        "add {item} to my list",
        "put {item} on the shopping list",
        "i need to buy {item}",
        "we are out of {item}",
    ],
    "lights_on": [
        "turn on the {room} lights",
        "lights on in the {room}",
        "switch on the {room} light",
        "it is dark in the {room}",
    ],
    "lights_off": [
        "turn off the {room} lights",
        "lights off in the {room}",
        "switch off the {room} light",
        "kill the {room} lights",
    ],
    "volume": [
        "turn the volume {level}",
        "volume {level}",
        "sound {level} please",
        "music {level} a bit",
        "can you turn it {level}",
    ],
}


def _slot_names(template: str) -> list[str]:
    import string

    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


def answer_json(intent: str, slots: dict[str, str]) -> str:
    """The compact JSON answer for one utterance (key order fixed, no spaces)."""
    return json.dumps({"intent": intent, "slots": slots}, separators=(",", ":"))


def make_example(rng: random.Random, intent: str | None = None, system_prompt: str | None = SYSTEM_PROMPT) -> dict:
    """One example in the internal shape: system, user utterance, assistant JSON; meta keeps intent and slots."""
    intent = intent or rng.choice(sorted(INTENTS))
    template = rng.choice(INTENTS[intent])
    slots = {name: rng.choice(SLOT_VALUES[name]) for name in _slot_names(template)}
    answer = answer_json(intent, slots)
    messages = [{"role": "user", "content": template.format(**slots)}, {"role": "assistant", "content": answer}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return {"messages": messages, "meta": {"intent": intent, "slots": slots, "reference": answer}}


def intent_dataset(rows: int = 600, seed: int = 0, system_prompt: str | None = SYSTEM_PROMPT) -> list[dict]:
    """`rows` seeded examples, intents balanced round-robin, no utterance twice while unused ones remain."""
    rng = random.Random(seed)
    names = sorted(INTENTS)
    seen: set[str] = set()
    out = []
    for i in range(rows):
        for _ in range(50):  # redraw a repeated utterance; a small intent may run out and repeat
            example = make_example(rng, names[i % len(names)], system_prompt)
            if example["messages"][-2]["content"] not in seen:
                break
        seen.add(example["messages"][-2]["content"])
        out.append(example)
    return out


def write_intent_dataset(
    path: str | Path, rows: int = 600, seed: int = 0, system_prompt: str | None = SYSTEM_PROMPT, unique: bool = False
) -> Path:
    """Write the data set as JSONL in the `messages` format (one conversation per line, meta alongside).

    `unique` drops repeated utterances, so fewer than `rows` lines may be written once the small intents run out.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    with out.open("w", encoding="utf-8") as f:
        for row in intent_dataset(rows, seed, system_prompt):
            utterance = row["messages"][-2]["content"]
            if unique and utterance in seen:
                continue
            seen.add(utterance)
            f.write(json.dumps({"messages": row["messages"], **row["meta"]}, ensure_ascii=False) + "\n")
    return out
