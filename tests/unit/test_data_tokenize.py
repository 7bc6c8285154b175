"""Loss mask over real chat templates: exactly the assistant contents plus their end-of-turn tokens get loss."""

from __future__ import annotations

import pytest

from tests.conftest import shared_path
from tunesmith.data.tokenize import IGNORE_INDEX, tokenize_conversation, tokenize_dataset

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital of France."},
    {"role": "user", "content": "And of Spain?"},
    {"role": "assistant", "content": "Madrid, since 1561."},
    {"role": "user", "content": "Thank you!"},
    {"role": "assistant", "content": "You are welcome."},
]
# template file, end-of-turn token, needs a system-free conversation (Mistral puts it in the first user turn anyway)
TEMPLATES = {
    "chatml": ("chatml.jinja", "<|im_end|>"),
    "llama3": ("llama3.jinja", "<|eot_id|>"),
    "mistral": ("mistral-instruct.jinja", "</s>"),
}


@pytest.fixture(scope="module")
def base_tokenizer():
    from tunesmith.model.tiny import build_tokenizer

    return build_tokenizer(None, 1024)


def _tokenizer_with(base, name: str):
    """The tiny tokenizer given the template's special tokens, with the curated template stripped per the MANIFEST."""
    import copy

    file, end = TEMPLATES[name]
    tok = copy.deepcopy(base)
    tok.add_special_tokens(
        {
            "bos_token": "<s>",
            "eos_token": end if name != "mistral" else "</s>",
            "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "</s>"],
        }
    )
    text = shared_path("chat_templates", file).read_text()
    tok.chat_template = text.replace("    ", "").replace("\n", "")
    return tok


def _trained_runs(tok, tokenized) -> list[str]:
    runs, current = [], []
    for tid, label in zip(tokenized.input_ids, tokenized.labels):
        if label != IGNORE_INDEX:
            assert label == tid
            current.append(tid)
        elif current:
            runs.append(tok.decode(current, skip_special_tokens=False))
            current = []
    if current:
        runs.append(tok.decode(current, skip_special_tokens=False))
    return runs


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_loss_is_exactly_assistant_content_plus_end_of_turn(base_tokenizer, name):
    tok = _tokenizer_with(base_tokenizer, name)
    end = TEMPLATES[name][1]
    tokenized = tokenize_conversation(tok, CONVERSATION)
    runs = _trained_runs(tok, tokenized)
    expected = [m["content"] + end for m in CONVERSATION if m["role"] == "assistant"]
    # Byte-level BPE glues the template's separating space to the first answer token (Mistral: ' Paris').
    assert [r.lstrip(" ") for r in runs] == expected
    assert tok.decode(tokenized.input_ids, skip_special_tokens=False) == tok.apply_chat_template(
        CONVERSATION, tokenize=False
    )


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_last_assistant_and_all(base_tokenizer, name):
    tok = _tokenizer_with(base_tokenizer, name)
    last = tokenize_conversation(tok, CONVERSATION, loss_on="last_assistant")
    assert [r.lstrip(" ") for r in _trained_runs(tok, last)] == ["You are welcome." + TEMPLATES[name][1]]
    everything = tokenize_conversation(tok, CONVERSATION, loss_on="all")
    assert everything.labels == everything.input_ids


def test_tokenize_dataset_is_cached_by_content(tiny_qwen2, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    import tunesmith.data.tokenize as tokenize_module

    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    examples = [{"messages": CONVERSATION[1:3], "meta": {"i": 1}}, {"text": "plain text", "meta": {}}]
    first = tokenize_dataset(tok, examples, max_length=12, cache_dir=tmp_path)
    assert first.column_names == ["input_ids", "labels", "truncated"]
    direct = tokenize_conversation(tok, CONVERSATION[1:3], max_length=12)
    assert first[0]["input_ids"] == direct.input_ids and first[0]["labels"] == direct.labels and first[0]["truncated"]
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1
    with monkeypatch.context() as patch:
        patch.setattr(tokenize_module, "tokenize_example", lambda *a, **k: pytest.fail("tokenized again"))
        again = tokenize_dataset(tok, examples, max_length=12, cache_dir=tmp_path)
    assert again[:] == first[:] and list(tmp_path.iterdir()) == cached
    tokenize_dataset(tok, examples, max_length=16, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2  # other settings, other fingerprint


def _review_examples():
    """zqz979/meta-review rows (Input: long reviews, Output: a short meta-review) through the recipe's template."""
    from tunesmith.data.formats import FormatSpec, to_internal

    spec = FormatSpec("template", template={"user": "Summarize these reviews:\n{Input}", "assistant": "{Output}"})
    rows = [
        {
            "Input": " ".join(f"Reviewer {i} finds the method sound but the baselines weak." for i in range(30)),
            "Output": "Accept with minor revisions: stronger baselines are needed.",
        },
        {"Input": "Short review: clear paper.", "Output": "Accept."},
    ]
    return [to_internal(r, spec) for r in rows]


def test_truncation_right_left_drop_on_a_summary(tiny_qwen2):
    from tunesmith.model.load import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_qwen2))
    long, short = _review_examples()
    full = tokenize_conversation(tokenizer, long["messages"])
    answer = [t for t in full.labels if t != IGNORE_INDEX]
    limit = len(full.input_ids) - len(answer) - 20  # the answer lies wholly beyond the limit
    right = tokenize_conversation(tokenizer, long["messages"], max_length=limit)
    left = tokenize_conversation(tokenizer, long["messages"], max_length=limit, truncation="left")
    drop = tokenize_conversation(tokenizer, long["messages"], max_length=limit, truncation="drop")
    assert right.truncated and right.num_loss_tokens == 0  # the summary is gone: nothing to learn
    assert (
        left.truncated
        and left.input_ids == full.input_ids[-limit:]
        and [t for t in left.labels if t != IGNORE_INDEX] == answer
    )
    assert drop.truncated and drop.input_ids == [] == drop.labels
    same = tokenize_conversation(tokenizer, short["messages"], max_length=limit, truncation="left")
    assert not same.truncated and same.input_ids == tokenize_conversation(tokenizer, short["messages"]).input_ids


def test_examples_cut_to_no_trained_token_are_dropped_with_a_count(tiny_qwen2, capsys):
    from tunesmith.config.schema import DataConfig
    from tunesmith.data.stats import trained_tokens_cut
    from tunesmith.model.load import load_tokenizer
    from tunesmith.train.batching import tokenize_split

    tokenizer = load_tokenizer(str(tiny_qwen2))
    examples = _review_examples()
    limit = len(tokenize_conversation(tokenizer, examples[0]["messages"]).input_ids) - 40
    split = tokenize_split(tokenizer, examples, DataConfig(max_length=limit), "train")
    assert (len(split.dataset), split.cut_away, split.skipped, split.truncated) == (1, 1, 0, 1)
    assert (
        f"train: dropped 1 of 2 examples whose trained tokens all lie beyond max_length {limit}"
        in capsys.readouterr().out
    )
    kept = tokenize_split(tokenizer, examples, DataConfig(max_length=limit, truncation="left"), "train")
    assert (len(kept.dataset), kept.cut_away) == (2, 0)
    assert trained_tokens_cut(tokenizer, examples, "assistant", limit, "right") == {
        "max_length": limit,
        "side": "right",
        "truncated": 1,
        "lose_part": 0,
        "lose_all": 1,
    }
    assert trained_tokens_cut(tokenizer, examples, "assistant", limit, "left")["lose_all"] == 0
    edge = len(tokenize_conversation(tokenizer, examples[0]["messages"]).input_ids) - 3  # cuts into the answer
    assert trained_tokens_cut(tokenizer, examples, "assistant", edge, "right")["lose_part"] == 1
