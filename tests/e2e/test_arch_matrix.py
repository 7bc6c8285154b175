"""Architecture matrix: a tiny random model of each family, built on a real tokenizer, goes through
merge -> llama.cpp's convert_hf_to_gguf.py -> parity with the merged HF model in llama.cpp.

BPE families use SmolLM2's tokenizer (llama.cpp identifies it by hash as `smollm`); SentencePiece families
use stories260K's tok512.model. Both come from ../shared and the tests skip without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_path
from tests.unit.run_fixtures_export import make_lora_run

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="needs the export extra: pip install 'tunesmith[export]'")

# family -> (tokenizer source, gguf general.architecture, tokenizer.ggml.pre) as llama.cpp's converter writes them.
# In a qwen2 folder transformers 5.24 loads any BPE vocabulary as Qwen2Tokenizer, which swaps in Qwen2's split
# rule; the converter's hash then knows no model, and tunesmith names the rule (qwen2) - the parity check proves
# llama.cpp tokenizes as that HF tokenizer does. A qwen3 folder keeps tokenizer.json's own rule (measured), so
# it, like the other BPE families, keeps the converter's own answer.
MATRIX = {
    "llama": ("spm", "llama", "default"),
    "smollm": ("bpe", "llama", "smollm"),
    "mistral": ("spm", "llama", "default"),
    "qwen2": ("bpe", "qwen2", "qwen2"),
    "qwen3": ("bpe", "qwen3", "smollm"),
    "gemma": ("spm", "gemma", "default"),
    "gemma2": ("spm", "gemma2", "default"),
    "phi3": ("spm", "phi3", "default"),
    "gpt_neox": ("bpe", "gptneox", "smollm"),
}
# f16 weights against the fp32 HF model: measured logit differences stay below 1e-3 on these tiny shapes; this
# test-only bound sits well under the shipped f16 bound (0.25, set by real models) to catch drift early.
F16_LOGIT_BOUND = 5e-3


@pytest.fixture(scope="session")
def smollm2_tokenizer(tmp_path_factory) -> Path:
    """SmolLM2's tokenizer read from the shared GGUF and saved as an HF folder (loading it takes seconds)."""
    from tunesmith.model.load import load_tokenizer

    gguf = shared_path("models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
    out = tmp_path_factory.mktemp("smollm2_tokenizer")
    load_tokenizer(str(gguf)).save_pretrained(out)
    return out


def tokenizer_source(kind: str, request) -> str:
    if kind == "spm":
        return str(shared_path("models", "stories260K", "tok512.model"))
    return str(request.getfixturevalue("smollm2_tokenizer"))


def gguf_string(path: Path, key: str) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields[key]
    return bytes(field.parts[field.data[0]]).decode()


@pytest.mark.parametrize("family", list(MATRIX))
def test_family_converts_with_parity(family, tmp_path, request):
    from tunesmith.export.export_run import export_run
    from tunesmith.model.tiny import build_tiny_model

    kind, arch, pre = MATRIX[family]
    base = build_tiny_model(family, tmp_path / "base", tokenizer_from=tokenizer_source(kind, request), seed=1)
    run = make_lora_run(base, tmp_path / "run", target_modules="all-linear")
    result = export_run(run, gguf_types=["f16"])
    f16 = result.parity["f16"]
    assert gguf_string(result.gguf_files["f16"], "general.architecture") == arch
    assert gguf_string(result.gguf_files["f16"], "tokenizer.ggml.pre") == pre
    assert f16.passed and f16.gguf_type == "f16", f16.failures  # the verdict against the fixed f16 bounds
    assert f16.measured["tokenization_match_rate"] == 1.0 and f16.measured["greedy_match_rate"] == 1.0
    assert f16.measured["max_logit_diff"] < F16_LOGIT_BOUND
