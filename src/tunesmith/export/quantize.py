"""GGUF quantization through llama.cpp's own quantize API (llama-cpp-python), plus the optional-import guard."""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ExportError

INSTALL_HINT = (
    "pip install 'tunesmith[export]'  (or: pip install 'llama-cpp-python>=0.3.9,<0.4'; "
    "it compiles llama.cpp from source, about 7-10 minutes on 2 cores)"
)
# tunesmith name -> llama.cpp's LLAMA_FTYPE_* constant name
FTYPES = {
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}


def require_llama_cpp():
    """The llama_cpp module, or an ExportError that says exactly what to install."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ExportError(
            f"GGUF export and its parity check need llama-cpp-python, which is not installed ({exc})",
            hint=f"install it: {INSTALL_HINT}; or export without GGUF: tunesmith export RUN_DIR --gguf none",
        ) from None
    return llama_cpp


def quantize(source: Path, out_path: Path, gguf_type: str) -> dict:
    """Quantize an f16/f32 GGUF to `gguf_type`; returns the tensor types llama.cpp actually wrote."""
    llama_cpp = require_llama_cpp()
    if gguf_type not in FTYPES:
        raise ExportError(f"unknown quantization type '{gguf_type}'", hint=f"choose one of: {', '.join(FTYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPES[gguf_type])
    params.nthread = 1  # one thread: the output is the same, and reruns stay byte-identical
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _quiet_llama_cpp()
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(out_path).encode(), params)
    if code != 0:
        raise ExportError(f"llama.cpp failed to quantize {source.name} to {gguf_type} (return code {code})")
    return tensor_type_counts(out_path)


def _quiet_llama_cpp() -> None:
    """llama.cpp logs every tensor while quantizing; keep its errors only (what tensor_type_counts reports)."""
    import logging

    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


def tensor_type_counts(path: Path) -> dict[str, int]:
    """How many tensors of each type a GGUF holds (shows k-quant fallbacks on tiny models)."""
    from gguf import GGUFReader

    counts: dict[str, int] = {}
    for tensor in GGUFReader(str(path)).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


# requested type -> (general.file_type, the tensor type of most matrices, types llama.cpp mixes in on purpose:
# Q6_K for output.weight / tied embeddings, and for some attn_v / ffn_down layers in the *_k_m mixes)
TENSOR_MIX = {
    "f32": ("ALL_F32", "F32", ()),
    "f16": ("MOSTLY_F16", "F16", ()),
    "bf16": ("MOSTLY_BF16", "BF16", ()),
    "q8_0": ("MOSTLY_Q8_0", "Q8_0", ()),
    "q6_k": ("MOSTLY_Q6_K", "Q6_K", ()),
    "q5_k_m": ("MOSTLY_Q5_K_M", "Q5_K", ("Q6_K",)),
    "q5_0": ("MOSTLY_Q5_0", "Q5_0", ("Q6_K",)),
    "q4_k_m": ("MOSTLY_Q4_K_M", "Q4_K", ("Q6_K",)),
    "q4_0": ("MOSTLY_Q4_0", "Q4_0", ("Q6_K",)),
}
# What llama.cpp writes when a row is not a whole number of blocks (tensor_type_fallback in llama-quant.cpp).
FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def tensor_type_problems(path: Path, requested: str) -> list[str]:
    """How the tensor types written to `path` differ from what `requested` must produce; empty when they match."""
    from gguf import GGUFReader, LlamaFileType

    file_type, main, companions = TENSOR_MIX[requested]
    reader = GGUFReader(str(path))
    problems = []
    field = reader.fields.get("general.file_type")
    # some converter classes (llama.cpp's GPT-NeoX) write no general.file_type: the tensor types below still decide
    written = LlamaFileType(int(field.contents())).name if field is not None else file_type
    if written != file_type:
        problems.append(f"general.file_type is {written}, not {file_type}")
    matrices = [t for t in reader.tensors if len(t.shape) >= 2]
    problems += [
        f"{t.name} ({t.tensor_type.name}) should be F32"
        for t in reader.tensors
        if len(t.shape) < 2 and t.tensor_type.name != "F32"
    ]
    for tensor in matrices:
        allowed = {_fitting_type(kind, int(tensor.shape[0])) for kind in (main, *companions)}
        if tensor.tensor_type.name not in allowed:
            problems.append(f"{tensor.name} is {tensor.tensor_type.name}, expected {' or '.join(sorted(allowed))}")
    for kind in (main, *companions[: 1 if requested.endswith("_k_m") else 0]):
        if any(_fitting_type(kind, int(t.shape[0])) == kind for t in matrices) and not any(
            t.tensor_type.name == kind for t in matrices
        ):
            problems.append(
                f"no tensor is {kind}, though rows of {kind}'s block size exist (the {requested} mix has it)"
            )
    return problems


def _fitting_type(kind: str, row: int) -> str:
    """`kind` if a row of `row` values is whole blocks of it, else llama.cpp's fallback (finally F16)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    for candidate in (kind, FALLBACK.get(kind)):
        if candidate and row % GGML_QUANT_SIZES[GGMLQuantizationType[candidate]][0] == 0:
            return candidate
    return "F16"


def require_tensor_types(path: Path, requested: str) -> None:
    """Read the written file back: an ExportError when its tensor types are not what `requested` produces."""
    problems = tensor_type_problems(path, requested)
    if problems:
        raise ExportError(
            f"quantization read-back: {path.name} was asked to be {requested} but holds other tensor types: "
            + "; ".join(problems[:5]),
            hint="the file was left in place for inspection; this is a conversion bug, please report it",
        )
