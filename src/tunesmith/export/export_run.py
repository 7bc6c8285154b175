"""`export_run`: merge -> GGUF (llama.cpp's converter, then its quantizer) -> Modelfile -> parity."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.config.schema import GGUF_TYPES
from tunesmith.data.tokenize import encode, prompt_ids, render, with_bos
from tunesmith.errors import ConfigError
from tunesmith.export.adapter import write_adapter_gguf, write_adapter_modelfile
from tunesmith.export.converter import converter_dir, converter_name
from tunesmith.export.gguf import FLOAT_TYPES, convert_to_gguf
from tunesmith.export.merge import merge_run
from tunesmith.export.ollama import modelfile, ollama_commands
from tunesmith.export.parity import Prompt
from tunesmith.export.quantize import quantize, require_llama_cpp, require_tensor_types, tensor_type_counts
from tunesmith.export.verify import ParityFailed, compare, failure_message, write_parity
from tunesmith.model.from_run import checkpoint_folder
from tunesmith.run_dir import RunDir, read_jsonl


@dataclass
class ExportResult:
    out_dir: Path
    merged_dir: Path | None = None
    gguf_files: dict[str, Path] = field(default_factory=dict)
    tensor_types: dict[str, dict[str, int]] = field(default_factory=dict)  # what llama.cpp wrote per format
    modelfile: Path | None = None
    template_family: str | None = None
    template_exact: bool = True
    template_notes: list[str] = field(default_factory=list)
    parity: dict = field(default_factory=dict)  # gguf type -> FormatParity (verdict, bounds, measured values)
    parity_file: Path | None = None
    ollama_commands: list[str] = field(default_factory=list)
    adapter_files: dict[str, Path] = field(default_factory=dict)  # "base" (f16 GGUF) and "lora" (LoRA GGUF)
    adapter_modelfile: Path | None = None
    converter: str | None = None  # which llama.cpp converter wrote the GGUF files
    checkpoint: str | None = None  # which weights of the run were exported: best, final or step-N


def export_run(
    run_dir,
    gguf_types=None,
    out_dir=None,
    verify: bool = True,
    merged: bool = True,
    adapter_gguf: bool | None = None,
    checkpoint: str | None = None,
    skipped_by: str = "--no-verify",
) -> ExportResult:
    """Export a finished run: merged safetensors, GGUF files, an Ollama Modelfile, and export/parity.json;
    with `adapter_gguf`, also the base GGUF + LoRA GGUF pair and Modelfile.adapter. `checkpoint` picks the
    weights (best, final, step-N; default best/ when the run kept one).

    `skipped_by` is what parity.json says turned the check off when `verify` is False.
    """
    run = RunDir.of(run_dir)
    run.require_finished()
    config = run.config()
    types = _gguf_types(config.export.gguf if gguf_types is None else gguf_types)
    adapter_gguf = config.export.adapter_gguf if adapter_gguf is None else adapter_gguf
    result = ExportResult(out_dir=Path(out_dir or config.export.out_dir or run.export))
    result.checkpoint = checkpoint_folder(run, checkpoint)[1]
    if types or adapter_gguf:
        _require_converter(result)  # fail before the slow steps, with what to install or fetch
    with tempfile.TemporaryDirectory() as tmp:
        merged_dir = result.out_dir / "merged" if merged else Path(tmp) / "merged"
        model, tokenizer = merge_run(run.root, merged_dir, result.checkpoint)
        result.merged_dir = merged_dir if merged else None
        # the run's own prompts: the GGUF's tokenizer settings follow how training tokenized them
        prompts = verification_prompts(run, tokenizer, config.export.verify_prompts)
        if types:
            _write_ggufs(result, merged_dir, types, config.run.name, Path(tmp), prompts[0].ids)
            _write_modelfile(result, run, config, tokenizer, types[0])
        if adapter_gguf:
            _write_adapter(result, run, config, tokenizer, Path(tmp), prompts[0].ids)
        if types or adapter_gguf:
            if verify:
                _verify(result, model, tokenizer, config, prompts)
            else:
                result.parity_file = result.out_dir / "parity.json"
                write_parity(result.parity_file, {}, 0, 0, skipped=skipped_by, checkpoint=result.checkpoint)
    return result


def _require_converter(result: ExportResult) -> None:
    require_llama_cpp()
    converter_dir()
    result.converter = converter_name()


def _write_adapter(result: ExportResult, run: RunDir, config, tokenizer, tmp: Path, prompt_ids: list[int]) -> None:
    write_adapter_gguf(result, run, config, tmp, prompt_ids)
    write_adapter_modelfile(
        result, tokenizer, _system_prompt(run, config), config.data.max_length, _adds_bos(tokenizer)
    )


def _gguf_types(types) -> list[str]:
    chosen = [t.lower() for t in (types or []) if t and t.lower() != "none"]
    unknown = [t for t in chosen if t not in GGUF_TYPES]
    if unknown:
        raise ConfigError(
            f"--gguf: unknown GGUF type(s): {', '.join(unknown)}", hint=f"choose from: {', '.join(GGUF_TYPES)}"
        )
    return list(dict.fromkeys(chosen))


def _write_ggufs(
    result: ExportResult, merged_dir: Path, types: list[str], name: str, tmp: Path, prompt_ids: list[int]
) -> None:
    """Float types come from llama.cpp's converter; quantized ones from its f16 file through llama.cpp's quantizer."""
    for gguf_type in [t for t in types if t in FLOAT_TYPES]:
        path = convert_to_gguf(merged_dir, result.out_dir / f"{name}-{gguf_type}.gguf", gguf_type, name, prompt_ids)
        require_tensor_types(path, gguf_type)
        result.gguf_files[gguf_type] = path
        result.tensor_types[gguf_type] = tensor_type_counts(path)
    quantized = [t for t in types if t not in FLOAT_TYPES]
    if not quantized:
        return
    source = result.gguf_files.get("f16") or convert_to_gguf(
        merged_dir, tmp / "source-f16.gguf", "f16", name, prompt_ids
    )
    for gguf_type in quantized:
        path = result.out_dir / f"{name}-{gguf_type}.gguf"
        result.tensor_types[gguf_type] = quantize(source, path, gguf_type)
        require_tensor_types(path, gguf_type)
        result.gguf_files[gguf_type] = path


def _system_prompt(run: RunDir, config) -> str | None:
    """The run's remembered system prompt (manifest.json); runs from before it was recorded: the config's."""
    manifest = run.read_manifest()
    if "system_prompt" in manifest.model_fields_set:
        return manifest.system_prompt
    from tunesmith.data.splits import system_prompt_of

    try:
        return system_prompt_of(config)
    except Exception:  # noqa: BLE001 - an old run whose prompt file moved: no SYSTEM line rather than a failed export
        return None


def _write_modelfile(result: ExportResult, run: RunDir, config, tokenizer, primary: str) -> None:
    text, fmt = modelfile(
        result.gguf_files[primary].name,
        tokenizer,
        _system_prompt(run, config),
        config.data.max_length,
        _adds_bos(tokenizer),
    )
    if _trained_with_tools(run):  # our Go TEMPLATE rebuilds turns only: no .Tools, no .ToolCalls
        fmt.exact = False
        fmt.notes.append(
            "the run trained tool calls, which this TEMPLATE does not render: use Ollama's own template for the family"
        )
        text = f"# APPROXIMATED: {fmt.notes[-1]}\n" + text
    result.modelfile = result.out_dir / "Modelfile"
    result.modelfile.write_text(text, encoding="utf-8")
    result.template_family, result.template_exact, result.template_notes = fmt.family, fmt.exact, fmt.notes
    result.ollama_commands = ollama_commands(config.export.ollama_name or config.run.name, result.modelfile)


def _adds_bos(tokenizer) -> bool:
    probe = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    return tokenizer.bos_token_id is not None and bool(probe) and probe[0] == tokenizer.bos_token_id


def _trained_with_tools(run: RunDir) -> bool:
    path = run.split_file("train")
    return path.exists() and any(row.get("tools") for row in read_jsonl(path))


def verification_prompts(run: RunDir, tokenizer, count: int):
    """Up to `count` prompts from the run's test split, rendered through the run's chat template.

    Test rows already carry the run's system prompt (added when the data was prepared) and their tool schemas;
    the fallback prompt gets the system prompt too, so parity is proven on prompts shaped like the deployed
    model's.
    """

    def bos_text(ids: list[int], text: str) -> str:  # llama.cpp reads the BOS from the text (add_bos=False)
        bos = tokenizer.bos_token
        return bos + text if ids and ids[0] == tokenizer.bos_token_id and bos and not text.startswith(bos) else text

    path = run.split_file("test")
    rows = read_jsonl(path) if path.exists() else []
    prompts = []
    for row in rows:
        messages = row.get("messages") or []
        cut = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
        if messages[:cut]:
            tools = row.get("tools")  # the row's function schemas, rendered as in training
            ids = prompt_ids(tokenizer, messages[:cut], tools)
            text = render(tokenizer, messages[:cut], add_generation_prompt=True, tools=tools)
            prompts.append(Prompt(ids, bos_text(ids, text)))
        elif row.get("text"):
            text = tokenizer.decode(encode(tokenizer, row["text"])[:32])
            ids = with_bos(tokenizer, encode(tokenizer, text))  # as training saw the text: BOS first where expected
            prompts.append(Prompt(ids, bos_text(ids, text)))
        if len(prompts) == count:
            break
    if not prompts:
        system = run.read_manifest().system_prompt
        hello = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": "Hello! Who are you?"}
        ]
        ids = prompt_ids(tokenizer, hello)
        prompts.append(Prompt(ids, bos_text(ids, render(tokenizer, hello, add_generation_prompt=True))))
    return prompts


def _verify(result: ExportResult, model, tokenizer, config, prompts: list[Prompt]) -> None:
    """Judge every GGUF against the merged HF model (export/verify.py); a failed verdict raises ParityFailed.

    The adapter pair is judged as llama.cpp / Ollama run it: the base GGUF with the LoRA GGUF applied at load
    time, against the merged model, under the base file's type bounds."""
    tokens = config.export.verify_tokens
    for gguf_type, path in result.gguf_files.items():
        result.parity[gguf_type] = compare(path, model, tokenizer, prompts, tokens)
    if result.adapter_files:
        base, lora = result.adapter_files["base"], result.adapter_files["lora"]
        result.parity["adapter-f16"] = compare(base, model, tokenizer, prompts, tokens, lora_path=lora)
    result.parity_file = result.out_dir / "parity.json"
    write_parity(result.parity_file, result.parity, len(prompts), tokens, checkpoint=result.checkpoint)
    if not all(report.passed for report in result.parity.values()):
        raise ParityFailed(
            failure_message(result.parity),
            hint=f"the GGUF files are left in {result.out_dir} for inspection; every measurement and bound is in "
            f"{result.parity_file}",
        )
