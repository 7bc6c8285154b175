"""`tunesmith plan`: no weights loaded, fast, activations as autograd keeps them, memory vs measured RSS,
advice, the train hook that refuses what will not fit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tunesmith.config.load import load_config
from tunesmith.plan.build import make_plan, plan_config
from tunesmith.plan.memory import Setup, activation_bytes_per_token
from tunesmith.plan.params import lora_params, model_shape

WORDS = "apple river stone cloud green seven quick table music light paper north".split()


def write_chats(path: Path, n: int = 60) -> Path:
    import random

    rng = random.Random(0)
    rows = []
    for _ in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 40)))
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config_dict(tmp_path: Path, mode: str = "lora", **tiny) -> dict:
    return {
        "run": {"name": "p", "output_dir": str(tmp_path / "runs"), "seed": 0},
        "model": {
            "name_or_path": "tiny:llama",
            "tiny": {"layers": 2, "hidden": 64, "heads": 4, "vocab_size": 512, **tiny},
        },
        "data": {
            "sources": [{"path": str(write_chats(tmp_path / "chat.jsonl"))}],
            "max_length": 128,
            "split": {"val": 0.0, "test": 0.0},
        },
        "train": {"mode": mode, "max_steps": 3, "batch_size": 4, "grad_accum": 1, "save_steps": 1000},
        "tracking": {"report_to": ["none"]},
    }


def test_plan_loads_no_weights_and_takes_under_5_seconds(tmp_path, monkeypatch):
    """from_pretrained / safetensors loading raise: the plan must never call them. Timed after a first call
    filled the caches (framework overhead, calibration), as a second `tunesmith plan` on a machine would be."""
    import transformers

    config = load_config(data=config_dict(tmp_path))
    plan_config(config, device="cpu")  # warm the cache

    def no_weights(*args, **kwargs):
        raise AssertionError("plan loaded weights")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", no_weights)
    monkeypatch.setattr("safetensors.torch.load_file", no_weights)
    started = time.perf_counter()
    plan = plan_config(config, device="cpu")
    assert time.perf_counter() - started < 5.0
    assert plan.fits and plan.seconds_per_step > 0 and plan.peak > 0
    assert not (tmp_path / "runs").exists(), "plan wrote a run directory"


def test_plan_cli_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config_dict(tmp_path)))
    out = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "plan", str(path), "--json", "--memory", "64GB"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["fits"] is True and data["capacity"] == 64 * 2**30
    assert {p["name"] for p in data["parts"]} >= {
        "weights",
        "adapter",
        "gradients",
        "optimizer",
        "activations",
        "logits",
        "framework overhead",
    }


def test_bad_memory_size_is_a_usage_error(tmp_path, capsys):
    from tunesmith.cli.main import main

    path = tmp_path / "c.json"
    path.write_text(json.dumps(config_dict(tmp_path)))
    assert main(["plan", str(path), "--memory", "lots"]) == 2
    assert "--memory lots: not a size" in capsys.readouterr().err


def saved_activation_bytes(model, tokens: int) -> float:
    """Bytes of the tensors autograd saves in one forward (parameters and buffers excluded, each storage once)."""
    import torch

    owned = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in owned:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=torch.randint(0, 256, (1, tokens)), use_cache=False, logits_to_keep=1)
    return sum(seen.values())


def layer_model(mode: str, dropout: float, layers: int, hidden=256, intermediate=768, heads=4, kv_heads=2):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tunesmith.model.adapters import add_adapters

    config = LlamaConfig(
        vocab_size=256,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = add_adapters(
        AutoModelForCausalLM.from_config(config),
        load_config(data={"train": {"mode": mode}, "lora": {"r": 8, "dropout": dropout}}),
    )
    if mode != "full":
        model.enable_input_require_grads()  # as sft.prepare_model does
    return model.train(), config


@pytest.mark.parametrize("mode, dropout", [("full", 0.0), ("lora", 0.05), ("lora", 0.0)])
def test_activation_formula_matches_what_autograd_saves(mode, dropout):
    """Per token and layer, the formula equals the saved tensors of real Llama layers (3 layers minus 1
    layer, so embeddings and the output layer cancel) within 3%."""
    tokens = 128
    one, config = layer_model(mode, dropout, 1)
    three, _ = layer_model(mode, dropout, 3)
    measured = (saved_activation_bytes(three, tokens) - saved_activation_bytes(one, tokens)) / 2 / tokens
    shape = model_shape(config, "llama")
    setup = Setup(
        "cpu",
        "fp32",
        mode,
        "sft",
        "adamw_torch",
        False,
        "padding_free",
        lora_params(shape, 8, "all-linear"),
        rank=8,
        dropout=dropout,
    )
    assert activation_bytes_per_token(shape, setup) == pytest.approx(measured, rel=0.03)


def test_activation_formula_check_catches_a_missing_mlp_term():
    """Planted bug: forgetting the MLP's kept outputs (3i per token) is far outside the 3% bound."""
    tokens = 128
    one, config = layer_model("full", 0.0, 1)
    three, _ = layer_model("full", 0.0, 3)
    measured = (saved_activation_bytes(three, tokens) - saved_activation_bytes(one, tokens)) / 2 / tokens
    shape = model_shape(config, "llama")
    setup = Setup("cpu", "fp32", "full", "sft", "adamw_torch", False, "padding_free", 0)
    wrong = activation_bytes_per_token(shape, setup) - 4 * 3 * shape.intermediate
    assert wrong != pytest.approx(measured, rel=0.03)


def test_qlora_weights_count_nf4_and_its_constants(tmp_path):
    config = load_config(data=config_dict(tmp_path, "qlora"))
    plan = make_plan(config, device="cpu", calibrate_time=False)
    shape = plan.shape
    weights = next(p.bytes for p in plan.parts if p.name == "weights")
    nf4 = shape.linear_weights * (0.5 + 1 / 64 + 4 / (64 * 256))
    assert weights == pytest.approx(nf4 + 4 * (shape.params - shape.linear_weights))
    config.quantization.double_quant = False
    plain = next(p.bytes for p in make_plan(config, device="cpu", calibrate_time=False).parts if p.name == "weights")
    assert plain - weights == pytest.approx(shape.linear_weights * (4 / 64 - 1 / 64 - 4 / (64 * 256)))


def test_padded_batches_cost_more_than_padding_free(tmp_path):
    free = make_plan(load_config(data=config_dict(tmp_path)), device="cpu", calibrate_time=False)
    config = load_config(data=config_dict(tmp_path))
    config.train.batching = "padded"
    padded = make_plan(config, device="cpu", calibrate_time=False)
    assert padded.workload.peak_batch_tokens == 4 * padded.workload.max_length_seen  # longest batch first
    assert padded.peak > free.peak


def test_does_not_fit_gives_advice_that_fits(tmp_path, monkeypatch):
    """A device with room for the LoRA run but not the full fine-tune: the plan says no, and the advice
    (each a --set planned again) includes a change that fits."""
    import tunesmith.plan.overhead as overhead

    # the CPU overhead is this process's live RSS, which grows between plans in a long test session; the
    # advice logic under test needs one fixed value (300 MiB) for every plan it compares
    monkeypatch.setattr(
        overhead, "framework_overhead", lambda device, method="sft": (300 * 2**20, "fixed for the test")
    )
    config = load_config(data=config_dict(tmp_path, "full", layers=4, hidden=256))
    lora = load_config(data=config_dict(tmp_path, "lora", layers=4, hidden=256))
    capacity = make_plan(lora, device="cpu", calibrate_time=False).peak + 2**20
    plan = plan_config(config, device="cpu", memory=capacity, calibrate_time=False)  # memory advice only
    assert not plan.fits and plan.advice
    assert any(a["fits"] for a in plan.advice)
    for advice in plan.advice:
        assert all("=" in s for s in advice["set"]) and advice["peak"] < plan.peak


def test_train_refuses_a_run_that_will_not_fit(tmp_path, monkeypatch, capsys):
    """`train` exits 2 with the advice before building or loading any model; --force goes on."""
    import tunesmith.model.base as base
    import tunesmith.plan.capacity as capacity
    from tunesmith.cli.main import main

    path = tmp_path / "c.json"
    path.write_text(json.dumps(config_dict(tmp_path)))
    monkeypatch.setattr(capacity, "available_ram", lambda: 100 * 2**20)  # less than the libraries alone
    monkeypatch.setattr(base, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "--force" in err
    assert not (tmp_path / "runs" / "p" / "base_model").exists()


def test_bare_on_off_overrides_read_as_words():
    config = load_config(data={}, overrides=["train.activation_checkpointing=on"])
    assert config.train.activation_checkpointing == "on"


def test_a_gguf_base_with_an_out_of_vocabulary_pad_id_gets_a_plan(tmp_path):
    # stories260K's GGUF stores pad id 2**32-1; the meta-device model failed on it ("no memory plan").
    from tests.conftest import shared_path

    gguf = shared_path("models", "stories260K", "stories260K.gguf")
    config = config_dict(tmp_path, mode="full")
    config["model"] = {"name_or_path": str(gguf)}
    plan = make_plan(load_config(data=config))
    assert plan.fits is not None and plan.peak > 0
    assert any(p.name == "weights" and p.bytes > 0 for p in plan.parts)


def test_calibration_runs_with_the_thread_count_training_uses(tmp_path):
    """The time probes run with torch's thread count of the process (the one `train` uses, recorded in
    manifest.json `measured.threads`), and a calibration cached at another count is not reused."""
    import torch

    config = load_config(data=config_dict(tmp_path))
    threads = torch.get_num_threads()
    first = make_plan(config, device="cpu")
    assert first.calibration["threads"] == threads
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        other = make_plan(config, device="cpu")
    finally:
        torch.set_num_threads(threads)
    assert other.calibration["threads"] != threads and not other.calibration["cached"]
    assert make_plan(config, device="cpu").calibration["cached"]


@pytest.mark.parametrize("n", [400, 37, 5000])
def test_padded_batches_are_drawn_as_transformers_groups_them(n):
    import random

    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from tunesmith.plan.workload import draw_batches

    rng = random.Random(n)
    lengths = [rng.randint(5, 512) for _ in range(n)]
    count = min(6, n // 8)  # within the first epoch
    drawn = draw_batches(n, 8, count, seed=3, group_lengths=lengths)
    order = get_length_grouped_indices(lengths, 8, generator=torch.Generator().manual_seed(3))
    assert drawn == [order[k : k + 8] for k in range(0, 8 * count, 8)]
    assert max(lengths) in [lengths[i] for i in drawn[0]]  # the longest example first, to fail early
    # planted: the whole epoch sorted longest first (what the plan did before) draws other batches
    whole_epoch = sorted(range(n), key=lambda i: -lengths[i])
    if n > 8 * 4:  # below that the sampler's one mega-batch is the whole epoch
        assert drawn != [whole_epoch[k : k + 8] for k in range(0, 8 * count, 8)]


def test_durations_keep_their_digits():
    from tunesmith.plan.report import duration

    # planted: a 30 ms step printed as "0.0 s" (what the quickstart's plan showed)
    assert [duration(x) for x in (0.03, 0.5, 12.34, 600, 9000, None)] == [
        "30 ms",
        "500 ms",
        "12.3 s",
        "10.0 min",
        "2.5 h",
        "n/a",
    ]


def trained_tokens_per_step(run_dir: Path) -> list[int]:
    """Real tokens of each optimizer step, from the run's cumulative token count (metrics.jsonl)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seen = [r["tokens"] for r in rows if "tokens" in r and "loss" in r]
    return [b - a for a, b in zip([0, *seen], seen)]


@pytest.mark.parametrize("batching", ["padding_free", "padded"])
def test_the_plan_draws_the_batches_training_runs(tmp_path, batching):
    """Over two epochs (60 examples, batch 4: 15 steps each), the plan's micro-batches hold exactly the real tokens
    of each step `tunesmith train` ran: the time is the mean over the batches the run times, not a guess."""
    import random

    import torch

    from tunesmith.plan.build import read_inputs
    from tunesmith.plan.workload import draw_batches
    from tunesmith.train.api import train

    data = config_dict(tmp_path)
    data["train"].update(max_steps=20, logging_steps=1, batching=batching, grad_accum=1)
    config = load_config(data=data)
    result = train(config)
    measured = trained_tokens_per_step(result.run_dir)
    lengths = [min(n, config.data.max_length) for n in read_inputs(config).lengths]
    grouped = lengths if batching == "padded" else None

    def tokens(batches):
        return [sum(lengths[i] for i in b) for b in batches]

    assert len(measured) == 20
    assert tokens(draw_batches(len(lengths), 4, 20, seed=0, group_lengths=grouped, group_size=4)) == measured
    # planted: python's shuffle (what the plan drew before) and the first epoch's order again in the second
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    assert tokens([order[k : k + 4] for k in range(0, 80, 4)][:20]) != measured
    if batching == "padding_free":
        first = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
        same_each_epoch = [first[k : k + 4] for k in range(0, 60, 4)] * 2
        assert tokens(same_each_epoch[:20]) != measured


def test_grpo_prompts_per_step_are_trls_repeat_sampler():
    """The prompts of each GRPO step, as TRL's RepeatSampler yields them (groups of num_generations, one generator
    across epochs, the short last chunk dropped), over three passes of 10 prompts at 3 prompts per step."""
    from trl.trainer.utils import RepeatSampler

    from tunesmith.plan.workload import prompt_chunks

    sampler = RepeatSampler(list(range(10)), mini_repeat_count=4, batch_size=3, repeat_count=1, seed=7)
    trl = []
    for _ in range(3):
        drawn = list(sampler)
        trl += [drawn[k : k + 12 : 4] for k in range(0, len(drawn), 12)]
    assert prompt_chunks(10, 3, 9, seed=7) == trl
    # planted: a generator seeded afresh each pass repeats the first pass's prompts
    fresh = [c for _ in range(3) for c in prompt_chunks(10, 3, 3, seed=7)]
    assert fresh != trl


def test_dpo_plan_counts_the_chosen_and_the_rejected_sequence(tmp_path):
    """A DPO step's real tokens are prompt + chosen and prompt + rejected of each pair (TRL's conversational
    rows, rejected answers longer here): the plan's batches hold exactly those of each step trained."""
    import random

    from tunesmith.plan.build import read_inputs
    from tunesmith.plan.workload import draw_batches
    from tunesmith.train.api import train

    rng = random.Random(1)

    def words(low: int, high: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))

    rows = [
        {
            "prompt": [{"role": "user", "content": words(3, 12) + "?"}],
            "chosen": [{"role": "assistant", "content": words(2, 8)}],
            "rejected": [{"role": "assistant", "content": words(10, 30)}],
        }
        for _ in range(40)
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = config_dict(tmp_path)
    data["method"] = "dpo"
    data["data"]["sources"] = [{"path": str(tmp_path / "pairs.jsonl")}]
    data["train"].update(max_steps=4, logging_steps=1)
    config = load_config(data=data)
    measured = trained_tokens_per_step(train(config).run_dir)
    inputs = read_inputs(config)
    batches = draw_batches(len(inputs.lengths), 4, 4, seed=0)
    assert [sum(inputs.lengths[i] + inputs.rejected[i] for i in b) for b in batches] == measured
    # planted: the chosen sequence counted twice (what the plan did before)
    assert [2 * sum(inputs.lengths[i] for i in b) for b in batches] != measured


def test_grpo_plan_on_several_cpu_threads_warns_that_load_slows_generation_more():
    """The note where the plan's medians were measured to miss load (GRPO, CPU, 2+ threads), nowhere else."""
    from types import SimpleNamespace

    from tunesmith.plan.build import generation_load_note
    from tunesmith.plan.speed import Calibration

    grpo, sft = SimpleNamespace(generations=4), SimpleNamespace(generations=0)
    assert "1.3-1.7x" in generation_load_note(grpo, Calibration("cpu", "fp32", 2))[0]
    assert generation_load_note(grpo, Calibration("cpu", "fp32", 1)) == []
    assert generation_load_note(grpo, Calibration("cuda", "bf16", 2)) == []
    assert generation_load_note(sft, Calibration("cpu", "fp32", 2)) == []
