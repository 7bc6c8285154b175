"""The whole pipeline on a real instruct model: SmolLM2-135M-Instruct read from its shared Q4_1 GGUF (Llama,
49k BPE vocabulary with llama.cpp pre-tokenizer `smollm`, tied embeddings, ChatML), through the shipped recipe
examples/intent-json-smollm2 with fewer steps: LoRA, eval base vs tuned, export f16 / q8_0 / q4_k_m through
llama.cpp's converter and quantizer, the parity verdict of each, and llama.cpp's completion through the
Modelfile's own TEMPLATE text. One run trains once (module fixture); every test reads from it.

Planted failures, on the same real files: a GGUF with two layers' attn_q swapped fails the q8_0 and q4_k_m
verdicts, the tuned f16 GGUF fails against the untuned base, and a Modelfile whose TEMPLATE names the wrong
role fails the template check (tests/e2e/test_verify_gguf.py plants conversion bugs in f32 files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_path
from tests.e2e.modelfile_render import parse_modelfile, render
from tests.e2e.test_verify_gguf import planted_copy, swap
from tunesmith.cli.main import main
from tunesmith.run_dir import RunDir, read_jsonl

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="needs the export extra: pip install 'tunesmith[export]'")
RECIPE = REPO / "examples" / "intent-json-smollm2" / "config.yaml"
SMOLLM2 = ("models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
NAME = "intent-json-smollm2"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    """The recipe with 24 steps of batch 8 and short eval / parity (the recipe itself runs 60 steps)."""
    gguf = shared_path(*SMOLLM2)
    out = tmp_path_factory.mktemp("smollm2")
    sets = [
        f"run.output_dir={out}",
        f"model.name_or_path={gguf}",
        f"data.sources.0.path={RECIPE.parent / 'intent.jsonl'}",
        "train.max_steps=24",
        "train.save_steps=24",
        "train.logging_steps=8",
        "eval.limit=5",
        "eval.max_new_tokens=32",
        "export.verify_prompts=2",
        "export.verify_tokens=16",
    ]
    assert main(["run", str(RECIPE), *[x for s in sets for x in ("--set", s)]]) == 0
    return RunDir.of(out / NAME)


@pytest.fixture(scope="module")
def merged(run):
    """The merged fine-tune export judged the GGUFs against (float32) and its tokenizer."""
    from tunesmith.model.load import load_model, load_tokenizer

    folder = str(run.export / "merged")
    return load_model(folder, dtype="float32").eval(), load_tokenizer(folder)


def test_tuned_model_learns_the_task_the_base_does_not_know(run):
    metrics = json.loads((run.eval / "metrics.json").read_text())["metrics"]
    assert metrics["json_valid"]["tuned"] >= 0.75 and metrics["json_valid"]["tuned"] > metrics["json_valid"]["base"]
    assert metrics["exact_match"]["tuned"] > metrics["exact_match"]["base"]
    assert "loss" in metrics and metrics["loss"]["tuned"] < metrics["loss"]["base"]


def test_each_gguf_is_llama_cpps_own_conversion_and_passes_the_verdict(run):
    from gguf import GGUFReader

    parity = json.loads((run.export / "parity.json").read_text())
    formats = parity["formats"]
    assert parity["verdict"] == "passed" and set(formats) == {"f16", "q8_0", "q4_k_m"}
    for name, report in formats.items():
        assert report["gguf_type"] == name and report["verdict"] == "passed", report["failures"]
        assert report["measured"]["tokenization_match_rate"] == 1.0
    assert formats["f16"]["measured"]["greedy_match_rate"] == 1.0
    fields = GGUFReader(str(run.export / f"{NAME}-f16.gguf")).fields
    assert fields["tokenizer.ggml.pre"].contents() == "smollm"  # what llama.cpp refused as 'gpt2' before
    q4 = {t.tensor_type.name for t in GGUFReader(str(run.export / f"{NAME}-q4_k_m.gguf")).tensors}
    assert "Q4_K" in q4


def _verdict(run, merged, gguf: Path):
    from tunesmith.export.export_run import verification_prompts
    from tunesmith.export.verify import compare

    model, tokenizer = merged
    return compare(gguf, model, tokenizer, verification_prompts(run, tokenizer, 2), 16)


@pytest.mark.parametrize("gguf_type", ["q8_0", "q4_k_m"])
def test_two_layers_attention_swapped_fails_the_quantized_verdict(run, merged, tmp_path, gguf_type):
    """The quantized bounds are loose enough for rounding noise yet catch a conversion bug on the real model."""
    source = run.export / f"{NAME}-{gguf_type}.gguf"
    planted = planted_copy(source, tmp_path, lambda r: swap(r, "blk.10.attn_q.weight", "blk.11.attn_q.weight"))
    report = _verdict(run, merged, planted)
    assert report.gguf_type == gguf_type and not report.passed, report.measured


def test_the_tuned_gguf_fails_against_the_untuned_base(run):
    """Export must convert the merged weights: the tuned f16 file judged against the base model fails."""
    from tunesmith.export.export_run import verification_prompts
    from tunesmith.export.verify import compare
    from tunesmith.model.from_run import load_base

    model, tokenizer = load_base(run.root, dtype="float32")
    report = compare(run.export / f"{NAME}-f16.gguf", model, tokenizer, verification_prompts(run, tokenizer, 2), 16)
    assert not report.passed and any("greedy tokens" in f or "logits" in f for f in report.failures)


def _held_out_answered(run) -> dict:
    rows = [r for r in read_jsonl(run.eval / "outputs.jsonl") if r["tuned"].strip() == r["reference"].strip()]
    assert rows, "the tuned model answered no held-out prompt exactly"
    return rows[0]


def template_mismatch(modelfile_text: str, tokenizer, messages: list[dict]) -> str | None:
    """Where the Modelfile's TEMPLATE (as Ollama renders it) differs from the model's jinja chat template."""
    modelfile = parse_modelfile(modelfile_text)
    ours = render(modelfile["template"], messages, modelfile["system"])
    system = [{"role": "system", "content": modelfile["system"]}] if modelfile["system"] else []
    if any(m["role"] == "system" for m in messages):
        system = []
    jinja = tokenizer.apply_chat_template(system + messages, tokenize=False, add_generation_prompt=True)
    if tokenizer.bos_token and jinja.startswith(tokenizer.bos_token) and not ours.startswith(tokenizer.bos_token):
        jinja = jinja[len(tokenizer.bos_token) :]  # llama.cpp adds BOS itself; the Modelfile leaves it out
    return None if ours == jinja else f"TEMPLATE renders {ours!r}, the chat template {jinja!r}"


def test_modelfile_template_renders_the_chat_template(run, merged):
    row = _held_out_answered(run)
    text = (run.export / "Modelfile").read_text()
    assert template_mismatch(text, merged[1], row["messages"]) is None
    planted = text.replace('eq .Role "user" }}<|im_start|>user', 'eq .Role "user" }}<|im_start|>human')
    assert planted != text and "human" in template_mismatch(planted, merged[1], row["messages"])


def test_llama_cpp_chat_through_the_modelfile_template_gives_the_tuned_answer(run):
    import llama_cpp

    row = _held_out_answered(run)
    modelfile = parse_modelfile((run.export / "Modelfile").read_text())
    prompt = render(modelfile["template"], row["messages"], modelfile["system"])
    llm = llama_cpp.Llama(model_path=str(run.export / f"{NAME}-f16.gguf"), n_ctx=512, verbose=False, seed=0)
    try:
        out = llm.create_completion(prompt, max_tokens=48, temperature=0.0, stop=modelfile["stop"])
    finally:
        llm.close()
    answer = out["choices"][0]["text"].strip()
    assert answer == row["reference"].strip(), (answer, row["reference"])
    assert json.loads(answer)["intent"] == json.loads(row["reference"])["intent"]
