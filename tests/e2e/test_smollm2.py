"""The whole pipeline on a real instruct model: SmolLM2-135M-Instruct read from its shared Q4_1 GGUF (Llama,
49k BPE vocabulary with llama.cpp pre-tokenizer `smollm`, tied embeddings, ChatML), the shipped recipe
examples/intent-json-smollm2 with fewer steps: LoRA, eval base vs tuned, export f16 / q8_0 / q4_k_m through
llama.cpp's converter, parity of each, and llama.cpp's completion through the Modelfile's own template."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, shared_path
from tests.e2e.modelfile_render import parse_modelfile, render
from tunesmith.cli.main import main
from tunesmith.run_dir import RunDir, read_jsonl

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="needs the export extra: pip install 'tunesmith[export]'")
RECIPE = REPO / "examples" / "intent-json-smollm2" / "config.yaml"
SMOLLM2 = ("models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunDir:
    gguf = shared_path(*SMOLLM2)
    out = tmp_path_factory.mktemp("smollm2")
    sets = [
        f"run.output_dir={out}", f"model.name_or_path={gguf}", f"data.sources.0.path={RECIPE.parent / 'intent.jsonl'}",
        "train.max_steps=40", "train.save_steps=40", "eval.limit=8", "export.verify_prompts=2", "export.verify_tokens=16",
    ]
    assert main(["run", str(RECIPE), *[x for s in sets for x in ("--set", s)]]) == 0
    return RunDir.of(out / "intent-json-smollm2")


def test_tuned_model_learns_the_task_the_base_does_not_know(run):
    metrics = json.loads((run.eval / "metrics.json").read_text())["metrics"]
    assert metrics["json_valid"]["tuned"] >= 0.75 and metrics["json_valid"]["tuned"] > metrics["json_valid"]["base"]
    assert metrics["exact_match"]["tuned"] > metrics["exact_match"]["base"]


def test_each_gguf_is_llama_cpps_own_conversion_and_passes_parity(run):
    from gguf import GGUFReader

    formats = json.loads((run.export / "parity.json").read_text())["formats"]
    assert set(formats) == {"f16", "q8_0", "q4_k_m"}
    assert formats["f16"]["match_rate"] == 1.0 and formats["f16"]["tokenization_match_rate"] == 1.0
    assert all(f["tokenization_match_rate"] == 1.0 for f in formats.values())
    fields = GGUFReader(str(run.export / "intent-json-smollm2-f16.gguf")).fields
    pre = fields["tokenizer.ggml.pre"]
    assert bytes(pre.parts[pre.data[0]]).decode() == "smollm"  # what llama.cpp refused as 'gpt2' before
    q4 = {t.tensor_type.name for t in GGUFReader(str(run.export / "intent-json-smollm2-q4_k_m.gguf")).tensors}
    assert "Q4_K" in q4


def test_llama_cpp_chat_through_the_modelfile_template_gives_the_tuned_answer(run):
    import llama_cpp

    modelfile = parse_modelfile((run.export / "Modelfile").read_text())
    rows = [r for r in read_jsonl(run.eval / "outputs.jsonl") if r["tuned"] == r["reference"]]
    assert rows, "the tuned model answered no held-out prompt exactly"
    row = rows[0]
    prompt = render(modelfile["template"], [m for m in row["messages"] if m["role"] != "system"], modelfile["system"])
    llm = llama_cpp.Llama(model_path=str(run.export / "intent-json-smollm2-f16.gguf"), n_ctx=512, verbose=False, seed=0)
    try:
        out = llm.create_completion(prompt, max_tokens=48, temperature=0.0, stop=modelfile["stop"])
    finally:
        llm.close()
    answer = out["choices"][0]["text"].strip()
    assert answer == row["tuned"] and json.loads(answer)["intent"] == json.loads(row["reference"])["intent"]
