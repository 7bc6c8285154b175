"""Batches: padding-free keeps examples apart (same loss as padded), loss only on assistant tokens."""

from __future__ import annotations

import pytest
import torch

from tunesmith.config.schema import DataConfig
from tunesmith.data.tokenize import IGNORE_INDEX
from tunesmith.errors import ConfigError, DataError
from tunesmith.model.load import load_model, load_tokenizer
from tunesmith.train.batching import Collator, real_tokens, resolve_batching, tokenize_split

ROWS = [
    {
        "messages": [
            {"role": "user", "content": "What is 2 plus 3?"},
            {"role": "assistant", "content": "The answer is 5."},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Play some jazz music please"},
            {"role": "assistant", "content": "Playing jazz."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help you today with your account?"},
        ]
    },
]


def _loss(model, batch) -> float:
    with torch.no_grad():
        return model(**batch).loss.item()


@pytest.mark.parametrize("fixture", ["tiny_qwen2", "tiny_llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_free_loss_equals_padded_loss(fixture, attn, request):
    folder = str(request.getfixturevalue(fixture))
    tok = load_tokenizer(folder)
    model = load_model(folder, attn_implementation=attn).eval()
    model.config.use_cache = False  # what trainable_model sets: without it packed examples attend to each other
    data = tokenize_split(tok, ROWS, DataConfig(max_length=64)).dataset
    features = [data[i] for i in range(len(data))]
    flat, padded = Collator("padding_free", tok)(features), Collator("padded", tok)(features)
    assert flat["input_ids"].shape[0] == 1 and "attention_mask" not in flat
    assert padded["input_ids"].shape[0] == 3
    assert real_tokens(flat) == real_tokens(padded) == sum(len(f["input_ids"]) for f in features)
    assert abs(_loss(model, flat) - _loss(model, padded)) < 1e-5


def test_labels_cover_only_assistant_tokens(tiny_qwen2):
    tok = load_tokenizer(str(tiny_qwen2))
    row = tokenize_split(tok, ROWS[:1], DataConfig(max_length=64)).dataset[0]
    trained = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(trained) == "The answer is 5.<|im_end|>"


def test_examples_without_loss_tokens_are_dropped_and_counted(tiny_qwen2):
    tok = load_tokenizer(str(tiny_qwen2))
    split = tokenize_split(tok, ROWS, DataConfig(max_length=16))  # only the first row's answer starts before token 16
    assert split.cut_away == 2 and split.skipped == 0 and len(split.dataset) == 1  # the cut ones are counted apart
    assert any(label != IGNORE_INDEX for label in split.dataset[0]["labels"])
    with pytest.raises(DataError, match="no train example has a token to learn from"):
        tokenize_split(tok, ROWS[1:2], DataConfig(max_length=16))


def test_batching_choice():
    assert resolve_batching("auto", "cpu") == "padding_free"
    assert resolve_batching("padded", "cuda") == "padded"
    from tunesmith.config import load_config

    with pytest.raises(ConfigError, match="train.batching"):  # packing is padding-free's job: one way to batch
        load_config(overrides=["train.batching=packed"])


@pytest.mark.parametrize("with_count", [False, True])
def test_loss_on_trained_positions_equals_the_models_own_loss(tiny_qwen2, with_count):
    """Skipping the output layer on untrained positions must not change the loss or its gradient."""
    import torch
    from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

    from tunesmith.data.tokenize import tokenize_conversation
    from tunesmith.model.load import load_tokenizer
    from tunesmith.train.sft import loss_on_trained_positions

    tok = load_tokenizer(str(tiny_qwen2))
    chats = [
        [
            {"role": "user", "content": f"question {i} about the weather"},
            {"role": "assistant", "content": "sunny " * (i + 1)},
        ]
        for i in range(3)
    ]
    features = [{"input_ids": t.input_ids, "labels": t.labels} for t in (tokenize_conversation(tok, c) for c in chats)]
    batch = DataCollatorWithFlattening(return_tensors="pt")(features)
    count = int((batch["labels"][:, 1:] != -100).sum()) if with_count else None
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    reference = model(**batch, use_cache=False, **({"num_items_in_batch": count} if count else {})).loss
    reference.backward()
    ref_grad = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    model.zero_grad()
    fast = loss_on_trained_positions(model, batch, count)
    fast.backward()
    assert torch.allclose(fast, reference, atol=1e-6)
    assert torch.allclose(model.model.layers[0].mlp.up_proj.weight.grad, ref_grad, atol=1e-6)


@pytest.mark.parametrize("arch_fixture", ["tiny_qwen2", "tiny_llama"])
def test_per_example_attention_equals_the_block_mask(arch_fixture, request):
    """Padding-free batches: SDPA per example (no mask) gives the same logits and loss as SDPA with the packed mask."""
    from transformers import AutoModelForCausalLM

    from tunesmith.data.tokenize import tokenize_conversation
    from tunesmith.train.varlen_attention import NAME, restore_sdpa, use_varlen_attention

    path = request.getfixturevalue(arch_fixture)
    tok = load_tokenizer(str(path))
    chats = [
        [{"role": "user", "content": f"tell me {i} things"}, {"role": "assistant", "content": "one two " * (i + 2)}]
        for i in range(4)
    ]
    batch = Collator("padding_free", tok)([vars(tokenize_conversation(tok, c)) for c in chats])
    assert batch["cu_seq_lens_q"].tolist()[-1] == batch["input_ids"].shape[1]
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
    plain = {k: v for k, v in batch.items() if not k.startswith(("cu_seq", "max_length"))}
    reference = model(**plain, use_cache=False)
    assert use_varlen_attention(model) and model.config._attn_implementation == NAME
    per_example = model(**batch, use_cache=False)
    assert torch.allclose(per_example.logits, reference.logits, atol=1e-5)
    assert per_example.loss.item() == pytest.approx(reference.loss.item(), abs=1e-6)
    restore_sdpa(model)
    assert model.config._attn_implementation == "sdpa"


def test_fast_dropout_matches_dropout_statistics_and_is_swapped_into_lora(tiny_qwen2):
    from tunesmith.config import load_config
    from tunesmith.model.adapters import add_adapters
    from tunesmith.model.dropout import FastDropout

    torch.manual_seed(0)
    layer = FastDropout(0.1).train()
    x = torch.ones(200_000)
    y = layer(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.1, abs=0.005)  # drop rate p
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)  # inverted scaling keeps the expectation
    assert torch.equal(layer.eval()(x), x)
    model = add_adapters(load_model(str(tiny_qwen2)), load_config(overrides=["lora.dropout=0.05"]))
    dropouts = [m for m in model.modules() if isinstance(m, FastDropout)]
    assert dropouts and all(d.p == 0.05 for d in dropouts)
    assert not any(isinstance(m, torch.nn.Dropout) for n, m in model.named_modules() if "lora_dropout" in n)


def test_tokenized_splits_are_cached_by_content(tiny_qwen2, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    tok = load_tokenizer(str(tiny_qwen2))
    first = tokenize_split(tok, ROWS, DataConfig(max_length=64))
    entries = list((tmp_path / "tokenized").iterdir())
    second = tokenize_split(tok, ROWS, DataConfig(max_length=64))
    assert len(entries) == 1 and list((tmp_path / "tokenized").iterdir()) == entries  # reused, not re-tokenized
    assert second.dataset["input_ids"] == first.dataset["input_ids"] and second.skipped == first.skipped
    tokenize_split(tok, ROWS, DataConfig(max_length=32))  # other settings, other entry
    assert len(list((tmp_path / "tokenized").iterdir())) == 2


def keep_mask(n: int, p: float, batch: int | None = None) -> torch.Tensor:
    """A flat bool mask: False at the positions model/dropout.py's drop_positions draws."""
    from tunesmith.model.dropout import drop_positions

    keep = torch.ones(n, dtype=torch.bool)
    keep[drop_positions(n, p, batch=batch)] = False
    return keep


def test_fast_dropout_forward_and_backward_equal_the_mask_product():
    from tunesmith.model.dropout import FastDropout

    x = torch.randn(3, 50, 64, requires_grad=True)
    weight = torch.randn(3, 50, 64)
    torch.manual_seed(7)
    fast = FastDropout(0.1).train()(x)
    (fast_grad,) = torch.autograd.grad((fast * weight).sum(), x)
    torch.manual_seed(7)  # the same draws: the same dropped positions
    reference = x * keep_mask(x.numel(), 0.1).view(x.shape) / 0.9
    (reference_grad,) = torch.autograd.grad((reference * weight).sum(), x)
    assert (fast == 0).any()
    assert torch.allclose(fast, reference, atol=1e-6) and torch.allclose(fast_grad, reference_grad, atol=1e-6)
    # a backward that forgot the mask (gradient flowing through dropped positions) would differ here
    assert not torch.allclose(weight / 0.9, fast_grad, atol=1e-6)


@pytest.mark.parametrize("p, batch", [(0.05, None), (0.2, None), (0.05, 7)])  # 7 gaps a round: ~360 rounds
def test_dropout_gaps_are_independent_drops_at_rate_p(p, batch):
    torch.manual_seed(1)
    dropped = torch.cat([~keep_mask(50_000, p, batch) for _ in range(20)]).float()
    assert dropped.mean().item() == pytest.approx(p, rel=0.03)
    assert (dropped[:-1] * dropped[1:]).mean().item() == pytest.approx(p * p, rel=0.1)  # neighbours independent
    runs = torch.diff(torch.nonzero(dropped).squeeze(-1)).float()  # gaps between drops: Geometric(p), mean 1/p
    assert runs.mean().item() == pytest.approx(1 / p, rel=0.03)


def test_dropped_positions_are_distinct_and_inside_the_tensor():
    """Gaps are Geometric on 1, 2, ...: a gap of 0 (floor instead of ceil) would repeat a position, and the first
    one would be -1, which put_ wraps to the last element; the mask statistics above cannot see either."""
    from tunesmith.model.dropout import drop_positions

    torch.manual_seed(2)
    for _ in range(50):
        drops = drop_positions(10_000, 0.05)
        assert drops.numel() > 0 and drops[0] >= 0 and drops[-1] < 10_000
        assert bool((torch.diff(drops) > 0).all())
