"""HF model folder -> GGUF (f32/f16/bf16) on the `gguf` package: hyper-parameters, tensors, tokenizer.

llama.cpp's own converter identifies BPE pre-tokenizers by hashing known models, so it rejects the freshly
trained vocabularies of tiny models; this small writer uses gguf's GGUFWriter and tensor-name maps instead.
Supported: Llama, Mistral (written as llama) and Qwen2. Tokenizers: byte-level BPE (gpt2 style, with the
Qwen2, Llama-3 or GPT-2 split rule) and SentencePiece-style BPE with byte fallback (llama).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tunesmith.errors import ExportError
from tunesmith.model.templates import END_OF_TURN

# HF architecture -> gguf arch name; Mistral is the llama graph (llama.cpp converts it the same way).
ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
FLOAT_TYPES = ("f32", "f16", "bf16")
# Pre-tokenizer split regexes llama.cpp knows by name (from the models' tokenizer.json files).
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PRE_TOKENIZERS = {QWEN2_SPLIT: "qwen2", LLAMA3_SPLIT: "llama-bpe"}


def convert_to_gguf(model_dir: Path, out_path: Path, out_type: str, tokenizer, name: str) -> Path:
    """Write `model_dir` (an HF folder with safetensors) as a GGUF of `out_type` (f32, f16 or bf16)."""
    import gguf

    if out_type not in FLOAT_TYPES:
        raise ExportError(f"GGUF conversion writes {', '.join(FLOAT_TYPES)}, not '{out_type}' (quantize afterwards)")
    config = json.loads((model_dir / "config.json").read_text())
    arch = architecture(config)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out_path), arch)
    writer.add_name(name)
    _add_hparams(writer, config, arch, out_type)
    _add_tokenizer(writer, tokenizer, model_dir, config["vocab_size"])
    for gguf_name, data, qtype in _tensors(model_dir, config, arch, out_type):
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
    rope_factors = llama3_rope_factors(config)
    if rope_factors is not None:
        writer.add_tensor("rope_freqs.weight", rope_factors, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def architecture(config: dict) -> str:
    """The gguf arch name of an HF config, or a clear error naming what is supported."""
    names = config.get("architectures") or [config.get("model_type", "?")]
    arch = ARCHITECTURES.get(names[0])
    if arch is None:
        raise ExportError(
            f"GGUF export does not support the architecture {names[0]}",
            hint=f"supported: {', '.join(ARCHITECTURES)}; export --merged only, then convert with llama.cpp's "
            "convert_hf_to_gguf.py",
        )
    return arch


def _rope_theta(config: dict) -> float:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "linear", "llama3"):
        raise ExportError(f"GGUF export: rope scaling '{rope_type}' is not supported (default, linear and llama3 are)")
    return float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))


def llama3_rope_factors(config: dict):
    """Llama-3.1/3.2 rope scaling as llama.cpp reads it: a per-frequency factor tensor `rope_freqs.weight`.

    Same formula as llama.cpp's converter (conversion/llama.py, generate_extra_tensors, v0.3.36 sdist).
    """
    import math

    import numpy as np

    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if str(rope.get("rope_type", rope.get("type", ""))).lower() != "llama3":
        return None
    base = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_context / low, old_context / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def _add_hparams(writer, config: dict, arch: str, out_type: str) -> None:
    import gguf

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type")) == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    if arch == "llama":
        writer.add_vocab_size(config["vocab_size"])
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16, "bf16": gguf.LlamaFileType.MOSTLY_BF16}
    writer.add_file_type(file_types[out_type])


def _tensors(model_dir: Path, config: dict, arch: str, out_type: str):
    """(gguf name, data, quant type) for every weight, in the checkpoint's order."""
    import gguf
    from safetensors import safe_open

    arch_enum = gguf.MODEL_ARCH.LLAMA if arch == "llama" else gguf.MODEL_ARCH.QWEN2
    names = gguf.get_tensor_name_map(arch_enum, config["num_hidden_layers"])
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir}: no .safetensors weights to convert")
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for hf_name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                if hf_name == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue
                gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise ExportError(f"GGUF export: no GGUF name for the tensor '{hf_name}' of {arch}")
                data = _permute_for_llama(hf_name, f.get_tensor(hf_name).float().numpy(), config, arch)
                qtype = _tensor_type(gguf_name, data, out_type)
                yield gguf_name, gguf.quants.quantize(data, qtype), qtype


def _tensor_type(gguf_name: str, data, out_type: str):
    """Norms and biases stay f32, as in llama.cpp's converter."""
    import gguf

    if out_type == "f32" or data.ndim <= 1 or gguf_name.endswith("_norm.weight"):
        return gguf.GGMLQuantizationType.F32
    return gguf.GGMLQuantizationType.F16 if out_type == "f16" else gguf.GGMLQuantizationType.BF16


def _permute_for_llama(hf_name: str, data, config: dict, arch: str):
    """HF stores Llama's q/k rows in rotate-half order; llama.cpp's llama graph wants them interleaved."""
    if arch != "llama" or not hf_name.endswith(("q_proj.weight", "k_proj.weight")):
        return data
    heads = config["num_attention_heads"]
    if hf_name.endswith("k_proj.weight"):
        heads = config.get("num_key_value_heads") or heads
    return data.reshape(heads, 2, data.shape[0] // heads // 2, *data.shape[1:]).swapaxes(1, 2).reshape(data.shape)


def _add_tokenizer(writer, tokenizer, model_dir: Path, vocab_size: int) -> None:
    tok_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model = tok_json["model"]
    if model["type"] == "BPE" and model.get("byte_fallback"):
        prepend_scheme = (tok_json.get("pre_tokenizer") or {}).get("prepend_scheme", "always")
        _add_sentencepiece_vocab(writer, tokenizer, vocab_size, prepend_scheme)
    elif model["type"] == "BPE" and (tok_json.get("decoder") or {}).get("type") == "ByteLevel":
        _add_byte_level_vocab(writer, tokenizer, tok_json, vocab_size)
    else:
        raise ExportError(
            f"GGUF export: tokenizer model '{model['type']}' is not supported",
            hint="supported: byte-level BPE (GPT-2/Qwen2/Llama-3 style) and SentencePiece BPE with byte fallback",
        )
    _add_special_tokens(writer, tokenizer)


def _vocab_rows(tokenizer, vocab_size: int) -> list[str | None]:
    by_id: list[str | None] = [None] * max(vocab_size, len(tokenizer))
    for text, idx in tokenizer.get_vocab().items():
        by_id[idx] = text
    return by_id


def _add_byte_level_vocab(writer, tokenizer, tok_json: dict, vocab_size: int) -> None:
    import gguf

    special = set(tokenizer.all_special_ids) | {a["id"] for a in tok_json.get("added_tokens", []) if a["special"]}
    added = {a["id"] for a in tok_json.get("added_tokens", [])}
    tokens, types = [], []
    for idx, text in enumerate(_vocab_rows(tokenizer, vocab_size)):
        if text is None:
            tokens.append(f"[PAD{idx}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(text)
        kind = gguf.TokenType.CONTROL if idx in special else gguf.TokenType.USER_DEFINED if idx in added else gguf.TokenType.NORMAL
        types.append(kind)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(tok_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = tok_json["model"].get("merges", [])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])


def _pre_tokenizer_name(tok_json: dict) -> str:
    """The llama.cpp pre-tokenizer whose split rule is the one in tokenizer.json."""
    pre = tok_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre])
    for step in steps:
        regex = (step.get("pattern") or {}).get("Regex")
        if step.get("type") == "Split" and regex in PRE_TOKENIZERS:
            return PRE_TOKENIZERS[regex]
        if step.get("type") == "ByteLevel" and step.get("use_regex", True):
            return "gpt2"
    raise ExportError(
        "GGUF export: the tokenizer's pre-tokenizer split rule is not one llama.cpp knows by name",
        hint="supported: the Qwen2, Llama-3 and GPT-2 split rules (tiny models use Qwen2's)",
    )


def _add_sentencepiece_vocab(writer, tokenizer, vocab_size: int, prepend_scheme: str) -> None:
    """SentencePiece BPE: llama.cpp merges by piece score, which SentencePiece sets to minus the merge rank."""
    import gguf

    special = set(tokenizer.all_special_ids)
    tokens, scores, types = [], [], []
    rank = 0
    for idx, text in enumerate(_vocab_rows(tokenizer, vocab_size)):
        if text is None:
            tokens.append(f"[PAD{idx}]"), scores.append(-1000.0), types.append(gguf.TokenType.UNUSED)
            continue
        if idx == tokenizer.unk_token_id:
            kind, score = gguf.TokenType.UNKNOWN, 0.0
        elif idx in special:
            kind, score = gguf.TokenType.CONTROL, 0.0
        elif re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            kind, score = gguf.TokenType.BYTE, 0.0
        else:
            kind, score, rank = gguf.TokenType.NORMAL, -float(rank), rank + 1
        tokens.append(text), scores.append(score), types.append(kind)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    # HF (legacy=False) puts '▁' only before the very first text, llama.cpp after every special token too;
    # chat prompts start with a special token, where "never" is what HF does.
    writer.add_add_space_prefix(prepend_scheme == "always")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)


def _add_special_tokens(writer, tokenizer) -> None:
    """bos/eos/unk/pad/eot ids, whether llama.cpp should add BOS/EOS, and the chat template."""
    for kind in ("bos", "eos", "unk", "pad"):
        idx = getattr(tokenizer, f"{kind}_token_id", None)
        if idx is not None:
            getattr(writer, f"add_{kind}_token_id")(idx)
    eot = end_of_turn_token(tokenizer)
    if eot is not None:
        writer.add_eot_token_id(tokenizer.convert_tokens_to_ids(eot))
    probe = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    writer.add_add_bos_token(bool(probe) and tokenizer.bos_token_id is not None and probe[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(bool(probe) and tokenizer.eos_token_id is not None and probe[-1] == tokenizer.eos_token_id)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template closes an assistant turn with (None when it uses plain EOS)."""
    template = tokenizer.chat_template or ""
    vocab = tokenizer.get_vocab()
    return next((t for t in END_OF_TURN if t in template and t in vocab), None)
