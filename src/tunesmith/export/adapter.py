"""Adapter GGUF: the base as an f16 GGUF, the LoRA as a GGUF beside it, and a Modelfile with ADAPTER.

Ollama and llama.cpp apply the adapter at load time, so one base file can serve several fine-tunes. The
LoRA is converted by llama.cpp's convert_lora_to_gguf.py, which needs the base as an HF folder (its config);
the base is saved from the run's own base model, so a base read from a quantized GGUF is written as the
dequantized float weights the adapter was trained on.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ExportError
from tunesmith.export.converter import convert_adapter
from tunesmith.export.gguf import convert_to_gguf
from tunesmith.export.merge import save_model_folder, sentencepiece_file
from tunesmith.export.ollama import modelfile
from tunesmith.export.quantize import require_tensor_types
from tunesmith.model.from_run import is_adapter, load_base


def write_adapter_gguf(result, run, config, tmp: Path, prompt_ids: list[int] | None = None) -> None:
    """Fill result.adapter_files (base, lora); `prompt_ids` as for export/gguf.py convert_to_gguf."""
    if not is_adapter(run.final):
        raise ExportError(
            f"--adapter-gguf: {run.final} holds full weights, not a LoRA adapter (train.mode full)",
            hint="export the merged model instead: tunesmith export RUN_DIR --gguf f16",
        )
    model, tokenizer = load_base(run.root, dtype=_float32())
    base_dir = save_model_folder(model, tokenizer, tmp / "base", sentencepiece_file(run.root))
    del model
    name = config.run.name
    base = convert_to_gguf(base_dir, result.out_dir / f"{name}-base-f16.gguf", "f16", f"{name}-base", prompt_ids)
    require_tensor_types(base, "f16")
    lora = convert_adapter(run.final, base_dir, result.out_dir / f"{name}-lora-f16.gguf", "f16")
    result.adapter_files = {"base": base, "lora": lora}


def write_adapter_modelfile(result, tokenizer, system_prompt: str | None, num_ctx: int, add_bos: bool) -> None:
    files = result.adapter_files
    text, _ = modelfile(files["base"].name, tokenizer, system_prompt, num_ctx, add_bos, adapter_name=files["lora"].name)
    result.adapter_modelfile = result.out_dir / "Modelfile.adapter"
    result.adapter_modelfile.write_text(text, encoding="utf-8")


def _float32():
    import torch

    return torch.float32
