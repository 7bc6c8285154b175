"""llama.cpp's own converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py), run as a subprocess.

They ship in the llama-cpp-python source distribution (vendor/llama.cpp/ with gguf-py/ and conversion/), not
in its wheel. The sdist of the *installed* llama-cpp-python version is fetched once with pip and only the
converter's files are kept in a cache, so the converter always matches the llama.cpp that loads its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tunesmith.errors import ExportError

PACKAGE = "llama-cpp-python"
# What the converter needs from vendor/llama.cpp/ (the rest of the 77 MB sdist is C++ sources).
NEEDED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "gguf-py", "conversion")
OUT_TYPES = ("f32", "f16", "bf16", "q8_0")  # what convert_hf_to_gguf.py writes itself
ENTRY = Path(__file__).with_name("converter_entry.py")


def llama_cpp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from tunesmith.export.quantize import INSTALL_HINT

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        raise ExportError(
            f"GGUF export needs {PACKAGE}, which is not installed", hint=f"install it: {INSTALL_HINT}"
        ) from None


def converter_name() -> str:
    """How errors and reports name the converter: llama.cpp's, from which llama-cpp-python release."""
    return f"llama.cpp convert_hf_to_gguf.py from {PACKAGE} {llama_cpp_version()}"


def cache_root() -> Path:
    """$TUNESMITH_CONVERTER_CACHE, else $TUNESMITH_CACHE, else ~/.cache/tunesmith."""
    root = os.environ.get("TUNESMITH_CONVERTER_CACHE") or os.environ.get("TUNESMITH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "tunesmith"


def converter_dir() -> Path:
    """The folder holding llama.cpp's converter for the installed llama-cpp-python, fetched on first use.

    $TUNESMITH_LLAMA_CPP may point at a llama.cpp checkout instead (offline machines).
    """
    override = os.environ.get("TUNESMITH_LLAMA_CPP")
    if override:
        folder = Path(override)
        if not (folder / "convert_hf_to_gguf.py").is_file():
            raise ExportError(f"TUNESMITH_LLAMA_CPP={override}: no convert_hf_to_gguf.py there")
        return folder
    ver = llama_cpp_version()
    folder = cache_root() / "llama.cpp-converter" / ver
    if all((folder / name).exists() for name in NEEDED):
        return folder
    with tempfile.TemporaryDirectory(prefix="tunesmith-sdist-") as tmp:
        sdist = _download_sdist(ver, Path(tmp))
        staged = Path(tmp) / "converter"
        _extract(sdist, staged)
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            staged.rename(folder)  # atomic: a concurrent fetch either wins or finds the folder complete
        except OSError:
            if not all((folder / name).exists() for name in NEEDED):
                raise
    return folder


def _download_sdist(ver: str, dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"{PACKAGE}=={ver}",
        "-d",
        str(dest),
    ]
    print(
        f"fetching llama.cpp's converter once: {PACKAGE} {ver} source distribution (about 77 MB) ...", file=sys.stderr
    )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("*.tar.gz"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ExportError(
            f"cannot fetch llama.cpp's converter: `pip download {PACKAGE}=={ver}` (source distribution) failed: "
            + " | ".join(last),
            hint="GGUF conversion uses the convert_hf_to_gguf.py of the installed llama-cpp-python; connect to the "
            "package index once (it is cached in " + str(cache_root() / "llama.cpp-converter") + "), or set "
            "TUNESMITH_LLAMA_CPP to a llama.cpp checkout; or export without GGUF: --gguf none",
        )
    return found[0]


def _extract(sdist: Path, out: Path) -> None:
    """Copy vendor/llama.cpp/{NEEDED} out of the sdist into `out`."""
    out.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        top = tar.getmembers()[0].name.split("/")[0]
        prefix = f"{top}/vendor/llama.cpp/"
        members = [
            m for m in tar.getmembers() if m.name.startswith(prefix) and m.name[len(prefix) :].split("/")[0] in NEEDED
        ]
        if not members:
            raise ExportError(f"{sdist.name}: no vendor/llama.cpp/convert_hf_to_gguf.py in this source distribution")
        for member in members:
            member.name = member.name[len(prefix) :]
        tar.extractall(out, members=members, filter="data")


def convert_model(
    model_dir: Path,
    out_path: Path,
    out_type: str,
    name: str | None = None,
    pre_tokenizer: str | None = None,
    space_prefix: bool | None = None,
    add_bos: bool | None = None,
) -> Path:
    """HF folder -> GGUF of `out_type` with convert_hf_to_gguf.py.

    `pre_tokenizer` names llama.cpp's pre-tokenizer for a vocabulary the converter cannot identify by hash
    (a freshly trained one); it is used only when the converter's own check fails. `space_prefix` (when not
    None) sets tokenizer.ggml.add_space_prefix of a SentencePiece vocabulary; `add_bos` (when not None) sets
    tokenizer.ggml.add_bos_token.
    """
    if out_type not in OUT_TYPES:
        raise ExportError(
            f"llama.cpp's converter writes {', '.join(OUT_TYPES)}, not '{out_type}' (quantize afterwards)"
        )
    args = [str(model_dir), "--outtype", out_type, "--outfile", str(out_path)] + (
        ["--model-name", name] if name else []
    )
    env = {
        "TUNESMITH_GGUF_PRE": pre_tokenizer or "",
        "TUNESMITH_GGUF_SPACE_PREFIX": "" if space_prefix is None else str(int(space_prefix)),
    }
    env["TUNESMITH_GGUF_ADD_BOS"] = "" if add_bos is None else str(int(add_bos))
    _run("convert_hf_to_gguf.py", args, model_dir, out_path, env)
    return out_path


def convert_adapter(adapter_dir: Path, base_dir: Path, out_path: Path, out_type: str = "f16") -> Path:
    """A peft LoRA folder -> LoRA GGUF with convert_lora_to_gguf.py (the base must be an HF folder)."""
    args = [str(adapter_dir), "--base", str(base_dir), "--outtype", out_type, "--outfile", str(out_path)]
    _run("convert_lora_to_gguf.py", args, base_dir, out_path, {})
    return out_path


def _run(script: str, args: list[str], model_dir: Path, out_path: Path, settings: dict[str, str]) -> None:
    folder = converter_dir()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings, "PYTHONPATH": os.pathsep.join([str(folder / "gguf-py"), str(folder)])}
    env.pop("NO_LOCAL_GGUF", None)
    cmd = [sys.executable, str(ENTRY), str(folder / script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not out_path.is_file():
        raise ExportError(
            f"llama.cpp's {script} (from {PACKAGE} {llama_cpp_version()}) failed on the {architecture(model_dir)} "
            f"model in {model_dir}: {_reason(proc.stderr + proc.stdout)}",
            hint="this llama.cpp release may not support the architecture or its tokenizer; a newer llama-cpp-python "
            "may (pip install -U 'tunesmith[export]'); export --gguf none still writes the merged safetensors",
        )


def _reason(output: str) -> str:
    """The converter's own explanation: its last error line (it logs a lot before failing)."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line.lower().split(":")[0]:
            return line
    return lines[-1] if lines else "no output"


def architecture(model_dir: Path) -> str:
    """The architecture named in an HF folder's config.json, for messages."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    return (config.get("architectures") or [config.get("model_type", "unknown")])[0]
