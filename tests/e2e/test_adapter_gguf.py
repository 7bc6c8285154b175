"""export --adapter-gguf: base GGUF + LoRA GGUF (llama.cpp's convert_lora_to_gguf.py) + Modelfile with ADAPTER,
proven by loading both in llama.cpp (lora_path) against the merged HF model; planted: the base without its
adapter, and another run's adapter, are both caught."""

from __future__ import annotations

import json

import pytest

from tests.unit.run_fixtures_export import make_lora_run

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="needs the export extra: pip install 'tunesmith[export]'")
# f16 base + f16 LoRA against the fp32 merged model: measured step-0 differences stay below 1e-3 here.
ADAPTER_LOGIT_BOUND = 5e-3


def gguf_string(path, key: str) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields[key]
    return bytes(field.parts[field.data[0]]).decode()


@pytest.fixture(scope="module")
def exported(tiny_qwen2, tmp_path_factory):
    from tunesmith.export.export_run import export_run

    root = tmp_path_factory.mktemp("adapter")
    run = make_lora_run(tiny_qwen2, root / "run", system_prompt="Be brief.")
    return run, export_run(run, gguf_types=[], adapter_gguf=True)


def test_adapter_gguf_matches_the_merged_model(exported):
    run, result = exported
    base, lora = result.adapter_files["base"], result.adapter_files["lora"]
    assert (base.name, lora.name) == ("run-base-f16.gguf", "run-lora-f16.gguf") and base.parent == lora.parent
    assert gguf_string(lora, "general.type") == "adapter" and gguf_string(lora, "adapter.type") == "lora"
    report = json.loads(result.parity_file.read_text())["formats"]["adapter-f16"]
    assert report["match_rate"] == 1.0 and report["tokenization_match_rate"] == 1.0 and len(report["prompts"]) == 3
    assert report["max_logit_diff"] < ADAPTER_LOGIT_BOUND
    text = result.adapter_modelfile.read_text()
    assert text.startswith("FROM ./run-base-f16.gguf\nADAPTER ./run-lora-f16.gguf\n")
    assert 'SYSTEM """Be brief."""' in text and 'PARAMETER stop "<|im_end|>"' in text


def reference(run):
    """The merged HF model, the run's verification prompts and stop ids, as export's check uses them."""
    from tunesmith.export.export_run import verification_prompts
    from tunesmith.model.from_run import load_tuned
    from tunesmith.run_dir import RunDir

    model, tokenizer = load_tuned(run, merged=True)
    return model.float().eval(), verification_prompts(RunDir.of(run), tokenizer, 3), {tokenizer.eos_token_id}


def test_base_alone_or_another_runs_adapter_is_caught(exported, tiny_qwen2, tmp_path):
    from tunesmith.export.export_run import export_run
    from tunesmith.export.parity import check_format

    run, result = exported
    model, prompts, stops = reference(run)
    base = result.adapter_files["base"]
    without = check_format(base, "adapter-f16", model, prompts, 12, stops)  # planted: ADAPTER line dropped
    other = export_run(make_lora_run(tiny_qwen2, tmp_path / "other", seed=1), gguf_types=[], adapter_gguf=True, verify=False)
    swapped = check_format(base, "adapter-f16", model, prompts, 12, stops, other.adapter_files["lora"])  # planted: wrong LoRA
    for planted in (without, swapped):
        assert planted.max_logit_diff > 10 * ADAPTER_LOGIT_BOUND
