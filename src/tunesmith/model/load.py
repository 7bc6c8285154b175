"""Load a base model and its tokenizer from a hub id, a local folder, a .gguf file, or a `tiny:` spec."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tunesmith.config.schema import ModelConfig
from tunesmith.errors import ModelError
from tunesmith.model.templates import resolve_chat_template
from tunesmith.model.tiny import build_tokenizer

TINY_PREFIX = "tiny:"
# transformers' per-load/save bars; hub download bars stay (a multi-GB download must show progress)
QUIET_BARS = ("Loading weights", "Writing model shards", "Converting and de-quantizing GGUF tensors")


def quiet_progress_bars() -> None:
    """Under the CLI (TUNESMITH_QUIET=1), hide transformers' local load/save bars but keep download bars."""
    import os

    if os.environ.get("TUNESMITH_QUIET") != "1":
        return
    from transformers.utils import logging as hf_logging

    def hook(factory, args, kwargs):
        desc = str(kwargs.get("desc") or (args[1] if len(args) > 1 and isinstance(args[1], str) else ""))
        if desc.startswith(QUIET_BARS):
            kwargs = {**kwargs, "disable": True}
        return factory(*args, **kwargs)

    hf_logging.set_tqdm_hook(hook)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type when it has none), cut at `limit` characters."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def is_tiny(name_or_path: str) -> bool:
    return name_or_path.startswith(TINY_PREFIX)


def split_gguf(name_or_path: str) -> tuple[str, str | None]:
    """('folder', 'file.gguf') for a .gguf path, else (name_or_path, None)."""
    if name_or_path.endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise ModelError(f"{name_or_path}: no such GGUF file")
        return str(path.parent), path.name
    return name_or_path, None


def load_tokenizer(
    name_or_path: str,
    tokenizer: str | None = None,
    chat_template: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
):
    """The tokenizer with pad token and chat template set (the template the run trains and exports with)."""
    from transformers import AutoTokenizer

    quiet_progress_bars()
    source = tokenizer or name_or_path
    folder, gguf_file = split_gguf(source)
    try:
        if source.endswith(".model"):
            tok = _sentencepiece_tokenizer(Path(source))
        elif gguf_file:
            tok = _gguf_tokenizer(Path(folder), gguf_file)
        else:
            tok = AutoTokenizer.from_pretrained(folder, revision=revision, trust_remote_code=trust_remote_code)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:  # incomplete or damaged files
        raise ModelError(
            f"cannot load the tokenizer of '{source}': {first_line(exc)}",
            hint="give a hub id (cached for offline use), a local model folder, or model.tokenizer",
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    tok.chat_template = resolve_chat_template(chat_template, tok)
    _check_template_parses(tok.chat_template, source)
    _add_bos_as_the_family_does(tok)
    return tok


def _check_template_parses(template, source: str) -> None:
    """A damaged chat template (a truncated chat_template.jinja) fails here, with its source, not mid-tokenizing."""
    from jinja2 import Environment, TemplateSyntaxError

    if not isinstance(template, str):
        return
    try:
        Environment().parse(template)
    except TemplateSyntaxError as exc:
        raise ModelError(
            f"the chat template of '{source}' does not parse: {exc.message} (template line {exc.lineno})",
            hint="restore the model's chat_template.jinja / tokenizer_config.json, or set model.chat_template",
        ) from None


def tokenizer_for(
    model: ModelConfig,
    name_or_path: str | None = None,
    texts: Iterable[str] | None = None,
    chat_template: str | None = None,
):
    """The tokenizer a config's model trains and generates with (model.tokenizer, revision, chat template).

    `name_or_path` replaces model.name_or_path (a resolved base, e.g. a run's built `tiny:` folder). An unbuilt
    `tiny:` model gets a tokenizer trained on `texts`, so counts are close to, not exactly, the run's.
    """
    name = name_or_path or model.name_or_path
    template = chat_template or model.chat_template
    if not is_tiny(name):
        return load_tokenizer(name, model.tokenizer, template, model.revision, model.trust_remote_code)
    tok = build_tokenizer(texts, model.tiny.vocab_size)
    tok.chat_template = resolve_chat_template(template, tok)
    return tok


def _add_bos_as_the_family_does(tok) -> None:
    """A SentencePiece (Llama-2 style) tokenizer adds BOS, as llama.cpp and Ollama do for the GGUF.

    transformers 5.24's LlamaTokenizer built from a bare .model (stories260K) does not; setting add_bos_token
    rewrites its post-processor, which is saved with the run, so training, generation and export agree.
    """
    from tunesmith.data.tokenize import expects_bos

    if expects_bos(tok) and list(tok("a")["input_ids"][:1]) != [tok.bos_token_id]:
        try:
            tok.add_bos_token = True
        except (AttributeError, ValueError):  # a tokenizer class without the setter: tokenize.with_bos still adds it
            pass


def _gguf_tokenizer(folder: Path, gguf_file: str):
    """GGUF tokenizers: transformers' loader, else a SentencePiece .model next to the file (stories260K)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    except Exception:  # noqa: BLE001 - transformers 5.24 raises IndexError on an invalid pad id (2**32-1)
        candidates = sorted(folder.glob("*.model"))
        if not candidates:
            raise ModelError(
                f"{folder / gguf_file}: transformers cannot read this GGUF's tokenizer",
                hint="set model.tokenizer to a tokenizer folder or SentencePiece .model file",
            ) from None
        return _sentencepiece_tokenizer(candidates[0])


def _sentencepiece_tokenizer(model_file: Path):
    """LlamaTokenizer from a bare SentencePiece file (it must be named tokenizer.model in a folder)."""
    from transformers import LlamaTokenizer

    if not model_file.is_file():
        raise ModelError(f"{model_file}: no such SentencePiece model")
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(model_file, Path(tmp) / "tokenizer.model")
        tok = LlamaTokenizer.from_pretrained(tmp, legacy=False)
    tok.init_kwargs.pop("vocab_file", None)
    return tok


def load_model(
    name_or_path: str,
    dtype=None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    quantization_config=None,
    device_map=None,
):
    """An AutoModelForCausalLM from a hub id, folder or GGUF file (GGUF pad ids out of range are dropped)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_progress_bars()
    folder, gguf_file = split_gguf(name_or_path)
    kwargs = dict(revision=revision, trust_remote_code=trust_remote_code)
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        config = AutoConfig.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # missing, damaged or foreign config.json
        raise ModelError(
            f"cannot load model '{name_or_path}': {first_line(exc)}",
            hint="give a hub id (cached for offline use), a local model folder, a .gguf file, or tiny:qwen2",
        ) from None
    drop_invalid_pad_id(config)
    if attn_implementation and attn_implementation != "auto":
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=dtype or "auto", **kwargs)
    except Exception as exc:  # noqa: BLE001 - safetensors, torch and transformers raise many types for a bad folder
        if not is_unreadable_model(exc):
            raise
        raise ModelError(
            f"cannot load the weights of '{name_or_path}': {first_line(exc)}",
            hint="the folder may be incomplete or damaged: download or save the model again",
        ) from None
    return forget_gguf_origin(model) if gguf_file else model


def is_unreadable_model(exc: Exception) -> bool:
    """Whether a load failure comes from the files (missing, truncated, wrong shapes), not from memory or a bug here."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return False
    if isinstance(exc, (OSError, ValueError, KeyError, EOFError)):
        return True
    if type(exc).__name__ in ("SafetensorError", "HeaderTooLarge"):  # safetensors' Rust errors
        return True
    return isinstance(exc, RuntimeError) and "size mismatch" in str(exc)


def forget_gguf_origin(model):
    """transformers 5.24 keeps a GGUF quantizer on a model whose GGUF weights it already dequantized to float;
    the Trainer then refuses to train it ("GGUF ... do not support training") and save_pretrained refuses to
    save it. The weights are plain floats: drop the marker."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and str(getattr(quantizer.quantization_config, "quant_method", "")).lower().endswith(
        "gguf"
    ):
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    return model


def drop_invalid_pad_id(config) -> None:
    """A pad id outside the vocabulary (stories260K's GGUF stores 2**32-1) would fail nn.Embedding: unset it."""
    pad, vocab = getattr(config, "pad_token_id", None), getattr(config, "vocab_size", None)
    if pad is not None and vocab is not None and not 0 <= pad < vocab:
        config.pad_token_id = None
