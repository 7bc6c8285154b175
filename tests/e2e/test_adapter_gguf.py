"""export --adapter-gguf: base GGUF + LoRA GGUF (llama.cpp's convert_lora_to_gguf.py) + Modelfile with ADAPTER,
judged by the parity verdict with both loaded in llama.cpp (lora_path) against the merged HF model; planted: the
base without its adapter, and another run's adapter, both fail the verdict (export's check and `tunesmith verify`).
"""

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
    payload = json.loads(result.parity_file.read_text())
    report = payload["formats"]["adapter-f16"]
    assert payload["verdict"] == "passed" and report["verdict"] == "passed", report["failures"]
    assert (report["gguf_type"], report["file"], report["lora"]) == ("f16", base.name, lora.name)
    assert report["bounds"]["max_logit_diff"] == 0.25 and len(report["prompts"]) == 3
    measured = report["measured"]
    assert measured["greedy_match_rate"] == 1.0 and measured["tokenization_match_rate"] == 1.0
    assert measured["max_logit_diff"] < ADAPTER_LOGIT_BOUND
    text = result.adapter_modelfile.read_text()
    assert text.startswith("FROM ./run-base-f16.gguf\nADAPTER ./run-lora-f16.gguf\n")
    assert 'SYSTEM """Be brief."""' in text and 'PARAMETER stop "<|im_end|>"' in text


def reference(run):
    """The merged HF model, the run's verification prompts and the verify settings, as export's check uses them."""
    from tunesmith.export.verify import run_prompts
    from tunesmith.model.from_run import load_tuned
    from tunesmith.run_dir import RunDir

    model, tokenizer = load_tuned(run, merged=True)
    return model, tokenizer, run_prompts(RunDir.of(run), tokenizer, 3)


def test_base_alone_or_another_runs_adapter_fails_the_verdict(exported, tiny_qwen2, tmp_path):
    from tunesmith.export.export_run import export_run
    from tunesmith.export.verify import compare

    run, result = exported
    model, tokenizer, prompts = reference(run)
    base = result.adapter_files["base"]
    without = compare(base, model, tokenizer, prompts, 12)  # planted: ADAPTER line dropped
    other = export_run(
        make_lora_run(tiny_qwen2, tmp_path / "other", seed=1), gguf_types=[], adapter_gguf=True, verify=False
    )
    swapped = compare(base, model, tokenizer, prompts, 12, lora_path=other.adapter_files["lora"])  # planted: wrong LoRA
    for planted in (without, swapped):
        assert planted.verdict == "failed" and planted.failures, planted.measured
        assert planted.measured["max_logit_diff"] > 10 * ADAPTER_LOGIT_BOUND


def test_verify_with_lora_passes_and_without_it_fails(exported, capsys):
    from tunesmith.cli.main import main

    run, result = exported
    base, lora = result.adapter_files["base"], result.adapter_files["lora"]
    assert main(["verify", str(run), str(base), "--lora", str(lora), "--prompts", "2"]) == 0, capsys.readouterr()
    assert "PASSED (f16)" in capsys.readouterr().out
    assert main(["verify", str(run), str(base), "--prompts", "2"]) == 1  # the base alone is not the tuned model
    assert "parity FAILED" in capsys.readouterr().out
