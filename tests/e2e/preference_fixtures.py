"""A synthetic preference set a tiny model can learn, and configs that train on it.

Each prompt names one colour between two noise words; the chosen answer repeats that colour, the rejected answer
names another colour. Before training a random model has no reason to prefer either (held-out preference
accuracy about 0.5: each colour is chosen as often as it is rejected); the rule "copy the colour of the
prompt" is learnable by attention.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

COLOURS = ["red", "blue", "green", "black"]
ANSWER = "{0} {0}"  # the answer names the colour (twice)
NOISE = "apple river stone cloud seven quick table music light paper north".split()


def preference_pairs(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """n distinct (prompt, chosen, rejected) triples."""
    rng = random.Random(seed)
    pairs: dict[str, tuple[str, str, str]] = {}
    while len(pairs) < n:
        colour = rng.choice(COLOURS)
        other = rng.choice([c for c in COLOURS if c != colour])
        words = rng.sample(NOISE, 2)
        prompt = f"Which colour: {words[0]} {colour} {words[1]}?"
        pairs.setdefault(prompt, (prompt, ANSWER.format(colour), ANSWER.format(other)))
    return list(pairs.values())


def split_pairs(train: int = 200, test: int = 48, seed: int = 0) -> tuple[list, list]:
    """Training pairs and held-out pairs whose prompts never occur in training."""
    pairs = preference_pairs(train + test, seed)
    return pairs[:train], pairs[train:]


def write_pairs(path: Path, pairs: list[tuple[str, str, str]]) -> Path:
    """TRL's conversational preference rows: prompt / chosen / rejected as message lists."""
    with path.open("w") as f:
        for prompt, chosen, rejected in pairs:
            f.write(
                json.dumps(
                    {
                        "prompt": [{"role": "user", "content": prompt}],
                        "chosen": [{"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "assistant", "content": rejected}],
                    }
                )
                + "\n"
            )
    return path


def write_unpaired(path: Path, pairs: list[tuple[str, str, str]]) -> Path:
    """The pairs as KTO rows (LLaMA-Factory kto_en_demo shape: messages + boolean label), one per answer."""
    with path.open("w") as f:
        for prompt, chosen, rejected in pairs:
            for answer, label in ((chosen, True), (rejected, False)):
                messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
                f.write(json.dumps({"messages": messages, "label": label}) + "\n")
    return path


def preference_data(tmp_path: Path, unpaired: bool = False, train: int = 200, test: int = 48) -> list[dict]:
    """data.sources: the training rows (pairs, or KTO rows) and held-out pairs as the test split."""
    train_pairs, test_pairs = split_pairs(train, test)
    writer = write_unpaired if unpaired else write_pairs
    train_file = writer(tmp_path / ("kto.jsonl" if unpaired else "pairs.jsonl"), train_pairs)
    return [
        {"path": str(train_file), "use_as": "train"},
        {"path": str(write_pairs(tmp_path / "held_out.jsonl", test_pairs)), "use_as": "test"},
    ]


def preference_config(tmp_path: Path, method: str, sources: list[dict], name: str | None = None, **train) -> dict:
    """A config on a tiny local model (vocabulary built from the pairs)."""
    settings = {
        "mode": "lora",
        "batch_size": 8,
        "grad_accum": 1,
        "max_steps": 60,
        "learning_rate": 1e-2,
        "lr_scheduler": "constant",
        "warmup_ratio": 0.0,
        "logging_steps": 5,
        "save_steps": 1000,
        **train,
    }
    return {
        "run": {"name": name or method, "output_dir": str(tmp_path / "runs"), "seed": 0},
        "model": {"name_or_path": "tiny:qwen2", "tiny": {"layers": 2, "hidden": 64, "heads": 4, "vocab_size": 400}},
        "data": {"sources": sources, "split": {"val": 0.0, "test": 0.1}, "max_length": 64},
        "method": method,
        "preference": {"beta": 0.5} if method in ("dpo", "kto") else {},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
        "train": settings,
        "eval": {"metrics": ["loss", "exact_match"], "max_new_tokens": 4, "compare_base": True},
        "tracking": {"report_to": ["none"]},
    }
