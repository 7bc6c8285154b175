"""HF model folder -> GGUF through llama.cpp's own converter (export/converter.py).

llama.cpp names a BPE vocabulary's pre-tokenizer from a hash of known models' tokenizers, so the freshly
trained vocabularies of tunesmith's tiny models are unknown to it. For those (and only when the converter's
own check fails) the pre-tokenizer is named from tokenizer.json's split rule when it is exactly one that
llama.cpp implements; the parity check then proves the tokenization matches. For SentencePiece vocabularies
the HF tokenizer's Metaspace rule decides whether llama.cpp adds '▁' before text (only "always" does).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.export.converter import convert_model
from tunesmith.model.load import load_tokenizer
from tunesmith.model.templates import END_OF_TURN

FLOAT_TYPES = ("f32", "f16", "bf16")
# Pre-tokenizer split regexes llama.cpp knows by name (from the models' tokenizer.json files).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
PRE_TOKENIZERS = {QWEN2_SPLIT: "qwen2", LLAMA3_SPLIT: "llama-bpe"}


def convert_to_gguf(
    model_dir: Path, out_path: Path, out_type: str, name: str | None = None, prompt_ids: list[int] | None = None
) -> Path:
    """Write `model_dir` (an HF folder with safetensors) as a GGUF of `out_type` (f32, f16 or bf16).

    `prompt_ids`: a prompt of the run as HF tokenized it for training (decides llama.cpp's '▁' before text).
    """
    return convert_model(
        model_dir,
        out_path,
        out_type,
        name,
        pre_tokenizer=split_rule_name(model_dir),
        space_prefix=space_prefix(model_dir, prompt_ids),
        add_bos=adds_bos(model_dir),
    )


def adds_bos(model_dir: Path) -> bool:
    """Whether the folder's HF tokenizer puts BOS before a text: llama.cpp must do the same (Ollama feeds it)."""
    tokenizer = load_tokenizer(str(model_dir))
    probe = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    return tokenizer.bos_token_id is not None and bool(probe) and probe[0] == tokenizer.bos_token_id


def split_rule_name(model_dir: Path) -> str | None:
    """llama.cpp's name for tokenizer.json's pre-tokenizer split regex, when it is exactly a known one."""
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    pre = json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    for step in pre.get("pretokenizers", [pre]):
        regex = (step.get("pattern") or {}).get("Regex")
        if step.get("type") == "Split" and regex in PRE_TOKENIZERS:
            return PRE_TOKENIZERS[regex]
    return None


def space_prefix(model_dir: Path, prompt_ids: list[int] | None = None) -> bool | None:
    """For a SentencePiece folder: llama.cpp's add_space_prefix that gives HF's ids (None: not SentencePiece).

    Metaspace "always" puts '▁' before every text, as llama.cpp does with the key on. HF (legacy=False) writes
    it before the string's very first text only ("first"), which llama.cpp cannot do: it adds '▁' after every
    special token or never. A chat prompt whose template writes BOS as text then gets none ("<s>User:"), while
    a plain-text row gets one after the BOS id ("▁Once"): so under "first" the run's own prompt decides, as
    measured in `prompt_ids` (the training ids); without one, chat prompts are assumed.
    """
    path = Path(model_dir) / "tokenizer.json"
    if not (Path(model_dir) / "tokenizer.model").is_file() or not path.is_file():
        return None
    tok = json.loads(path.read_text(encoding="utf-8"))
    steps = [tok.get("pre_tokenizer") or {}, tok.get("normalizer") or {}]
    steps += [s for step in list(steps) for s in step.get("pretokenizers", step.get("normalizers", []))]
    schemes = [s.get("prepend_scheme") for s in steps if s.get("type") == "Metaspace"]
    if not schemes:
        return None
    if schemes[0] == "first" and prompt_ids is not None:
        return prefixes_text(load_tokenizer(str(model_dir)), prompt_ids)
    return schemes[0] == "always"


def prefixes_text(tokenizer, ids: list[int]) -> bool:
    """Whether HF's ids put '▁' on the first text after the prompt's leading special tokens (BOS, a header)."""
    special = set(tokenizer.all_special_ids)
    first = next((i for i in ids if i not in special), None)
    return first is not None and tokenizer.convert_ids_to_tokens(first).startswith("\u2581")


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template closes an assistant turn with (None when it uses plain EOS)."""
    template = tokenizer.chat_template or ""
    vocab = tokenizer.get_vocab()
    return next((t for t in END_OF_TURN if t in template and t in vocab), None)
