"""`tunesmith verify` and export's parity verdict catch conversion bugs planted in the written GGUF file itself.

Each bug is planted with the gguf library on a copy of a correct export (tensor data and metadata edited in
place), so the check is judged independently of whichever writer produced the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.unit.run_fixtures_export import make_lora_run
from tunesmith.cli.main import main

pytestmark = pytest.mark.slow
pytest.importorskip("llama_cpp", reason="needs the export extra: pip install 'tunesmith[export]'")


@pytest.fixture(scope="module")
def llama_export(tmp_path_factory) -> tuple[Path, Path]:
    """A LoRA run on a tiny Llama (q/k rope permutation applies) exported as f32: (run_dir, gguf)."""
    from tunesmith.export.export_run import export_run
    from tunesmith.model.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("verify")
    base = build_tiny_model("llama", root / "base", seed=3)
    run_dir = make_lora_run(base, root / "run", chat_template="chatml", system_prompt="Answer briefly.")
    result = export_run(run_dir, gguf_types=["f32"])
    assert result.parity["f32"].passed, result.parity["f32"].failures
    return run_dir, result.gguf_files["f32"]


def planted_copy(source: Path, tmp_path: Path, plant) -> Path:
    """Copy `source` and apply `plant(reader)` to the copy, memory-mapped writable."""
    from gguf import GGUFReader

    path = tmp_path / f"planted-{source.name}"
    shutil.copyfile(source, path)
    reader = GGUFReader(str(path), "r+")
    plant(reader)
    reader.data.flush()
    del reader
    return path


def tensor(reader, name: str):
    return next(t for t in reader.tensors if t.name == name)


def swap(reader, a: str, b: str) -> None:
    ta, tb = tensor(reader, a), tensor(reader, b)
    saved = ta.data.copy()
    ta.data[...] = tb.data
    tb.data[...] = saved


def undo_rope_permutation(reader) -> None:
    """What a converter that forgets Llama's q/k row permutation writes (inverse of the HF -> GGUF permutation)."""
    heads = int(reader.fields["llama.attention.head_count"].contents())
    kv_heads = int(reader.fields["llama.attention.head_count_kv"].contents())
    for t in reader.tensors:
        if t.name.endswith(("attn_q.weight", "attn_k.weight")):
            n = heads if "attn_q" in t.name else kv_heads
            rows, cols = t.data.shape
            t.data[...] = t.data.reshape(n, rows // n // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols).copy()


def set_field(name: str, value):
    def plant(reader):
        field = reader.fields[name]
        field.parts[field.data[0]][0] = value

    return plant


def roll_embeddings(reader) -> None:
    """Token ids off by one: every embedding row moved to the next id (tied output moves with it)."""
    data = tensor(reader, "token_embd.weight").data
    data[...] = np.roll(data, 1, axis=0)


def verify_cli(run_dir: Path, gguf: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["verify", str(run_dir), str(gguf), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_verify_passes_the_correct_export(llama_export, tmp_path, capsys):
    run_dir, gguf = llama_export
    code, out = verify_cli(run_dir, gguf, capsys, "--report", str(tmp_path / "r.json"))
    assert code == 0, out
    assert "PASSED (f32)" in out and "FAILED" not in out
    report = json.loads((tmp_path / "r.json").read_text())
    fmt = report["formats"][gguf.name]
    assert report["verdict"] == "passed" and fmt["bounds"]["max_logit_diff"] == 1e-3
    assert fmt["measured"]["greedy_match_rate"] == 1.0 and fmt["measured"]["max_logit_diff"] < 1e-3
    prompt = fmt["prompts"][0]
    assert prompt["hf_tokens"] == prompt["gguf_top1"] and prompt["tokenization_equal"]
    # the run's test prompts, with its system prompt, through its chat template
    assert prompt["text"].startswith("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nHow do I reset")


PLANTS = {
    "swapped ffn_gate/ffn_up": lambda r: swap(r, "blk.1.ffn_gate.weight", "blk.1.ffn_up.weight"),
    "missing q/k rope permutation": undo_rope_permutation,
    "wrong rope freq base": set_field("llama.rope.freq_base", 500000.0),
    "wrong rms norm epsilon": set_field("llama.attention.layer_norm_rms_epsilon", 1e-2),
    "token ids shifted by one": roll_embeddings,
    "layer 0 and 1 attn_v swapped": lambda r: swap(r, "blk.0.attn_v.weight", "blk.1.attn_v.weight"),
}


@pytest.mark.parametrize("bug", list(PLANTS))
def test_verify_fails_each_planted_conversion_bug(llama_export, tmp_path, capsys, bug):
    run_dir, gguf = llama_export
    code, out = verify_cli(run_dir, planted_copy(gguf, tmp_path, PLANTS[bug]), capsys)
    assert code == 1, out
    assert "parity FAILED" in out and "FAILED (f32)" in out
    assert "logit difference" in out and "over the bound 0.001" in out  # names the difference and its bound
    assert "first over it: prompt 0, position" in out or "first divergence at generated token" in out


def test_a_no_op_parity_check_would_pass_a_planted_bug(llama_export, tmp_path, capsys, monkeypatch):
    """Guards the guard: with the verdict made a no-op, the swapped-tensor GGUF passes, so the test above fails."""
    from tunesmith.export import parity

    run_dir, gguf = llama_export
    planted = planted_copy(gguf, tmp_path, PLANTS["swapped ffn_gate/ffn_up"])
    monkeypatch.setattr(parity, "judge", lambda results, bounds: [])
    code, out = verify_cli(run_dir, planted, capsys)
    assert code == 0 and "PASSED" in out
    monkeypatch.undo()
    assert verify_cli(run_dir, planted, capsys)[0] == 1


def test_verify_against_a_model_folder_uses_default_prompts(llama_export, tmp_path, capsys):
    from tunesmith.export.merge import merge_run

    run_dir, gguf = llama_export
    merge_run(run_dir, tmp_path / "merged")
    assert verify_cli(tmp_path / "merged", gguf, capsys)[0] == 0
    planted = planted_copy(gguf, tmp_path, PLANTS["layer 0 and 1 attn_v swapped"])
    code, out = verify_cli(tmp_path / "merged", planted, capsys)
    assert code == 1 and "parity FAILED" in out


def test_verify_names_a_missing_file_and_a_non_model(llama_export, tmp_path, capsys):
    run_dir, gguf = llama_export
    code, out = verify_cli(run_dir, tmp_path / "nope.gguf", capsys)
    assert code == 2 and "nope.gguf: no such GGUF file" in out
    code, out = verify_cli(tmp_path, gguf, capsys)
    assert code == 2 and "neither a tunesmith run directory" in out


def with_metadata(source: Path, tmp_path: Path, key: str, value: bool) -> Path:
    """A copy of `source` with one bool key set or added (llama.cpp's converter may not write it at all),
    rewritten by the gguf library's own gguf_new_metadata copier."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(str(source))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    path = tmp_path / f"planted-{source.name}"
    writer = gguf.GGUFWriter(str(path), arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, {key: MetadataDetails(gguf.GGUFValueType.BOOL, value)}, [])
    return path


def test_bos_added_by_llama_cpp_but_not_by_hf_fails(llama_export, tmp_path, capsys):
    """A converter that turns add_bos on (or names another BOS id) makes llama.cpp feed ids HF never trained on."""
    run_dir, gguf = llama_export
    planted = with_metadata(gguf, tmp_path, "tokenizer.ggml.add_bos_token", True)
    code, out = verify_cli(run_dir, planted, capsys)
    assert code == 1 and "special tokens: HF puts nothing before a text, llama.cpp puts [" in out


def with_bug_after_writing(monkeypatch, plant) -> None:
    """Make export's GGUF step write its files and then corrupt them, whoever the writer is."""
    import tunesmith.export.export_run as export_module

    real = export_module._write_ggufs

    def write_then_plant(result, *args, **kwargs):
        real(result, *args, **kwargs)
        for path in result.gguf_files.values():
            planted_copy(path, path.parent, plant).replace(path)

    monkeypatch.setattr(export_module, "_write_ggufs", write_then_plant)


def test_export_exits_1_with_parity_failed_and_keeps_the_evidence(tiny_llama, tmp_path, capsys, monkeypatch):
    run_dir = make_lora_run(tiny_llama, tmp_path / "run", chat_template="chatml")
    with_bug_after_writing(monkeypatch, PLANTS["swapped ffn_gate/ffn_up"])
    assert main(["export", str(run_dir), "--gguf", "f32"]) == 1
    captured = capsys.readouterr()
    assert "parity FAILED" in captured.err and "f32 (run-f32.gguf, type f32)" in captured.err
    assert "PASSED" not in captured.out and "ollama create" not in captured.out  # no success summary
    parity = json.loads((run_dir / "export" / "parity.json").read_text())
    assert parity["verdict"] == "failed" and parity["formats"]["f32"]["verdict"] == "failed"
    assert parity["formats"]["f32"]["measured"]["max_logit_diff"] > parity["formats"]["f32"]["bounds"]["max_logit_diff"]


def test_no_verify_is_recorded_in_parity_json(tiny_llama, tmp_path, capsys):
    run_dir = make_lora_run(tiny_llama, tmp_path / "run", chat_template="chatml")
    assert main(["export", str(run_dir), "--gguf", "f16", "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "parity NOT checked" in out and "PASSED" not in out
    payload = json.loads((run_dir / "export" / "parity.json").read_text())
    assert payload == {"verdict": "skipped", "skipped_by": "--no-verify", "formats": {}, "checkpoint": "final"}


def test_f32_and_bf16_exports_pass_parity_with_the_type_read_from_the_file(tiny_qwen2, tmp_path, capsys):
    run_dir = make_lora_run(tiny_qwen2, tmp_path / "run")
    assert main(["export", str(run_dir), "--gguf", "f32", "bf16"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "parity f32: PASSED (f32)" in out and "parity bf16: PASSED (bf16)" in out
    formats = json.loads((run_dir / "export" / "parity.json").read_text())["formats"]
    assert formats["f32"]["gguf_type"] == "f32" and formats["bf16"]["gguf_type"] == "bf16"
    # bf16 keeps 8 bits of mantissa: its logits move far more than f32's, both inside their own bounds
    assert formats["f32"]["measured"]["max_logit_diff"] < 1e-3 < formats["bf16"]["measured"]["max_logit_diff"] < 5e-2
