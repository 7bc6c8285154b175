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
