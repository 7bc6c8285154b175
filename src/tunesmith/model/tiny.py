"""Tiny local models: a tokenizer plus a small random model of one of the families in model/families.py.

They exist so that tests and the offline quickstart run with no download. The tokenizer is either trained
here (byte-level BPE with Qwen2's split rule and NFC, so that `AutoTokenizer`, which swaps in Qwen2's
pre-tokenizer for model_type qwen2, tokenizes exactly as at training time) or a real model's (`tokenizer_from`:
a model folder, a .gguf or a SentencePiece .model), which llama.cpp's converter recognises.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tunesmith.errors import ConfigError
from tunesmith.model.families import FAMILIES

ARCHITECTURES = FAMILIES
PAD, EOS, IM_START, IM_END = "<|endoftext|>", "<|im_end|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokenizer split pattern (as in its tokenizer.json).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
BUILTIN_TEXT = """\
Once upon a time a small model learned to answer questions. It read many sentences and counted words.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!
How do I reset my password? What is the weather in Paris tomorrow? Book a table for two at 7 pm.
Transfer 250 dollars to my savings account. Play some jazz music. Set an alarm for 6:30 am.
{"intent": "book_restaurant", "slots": {"people": 2, "time": "19:00"}} [1, 2, 3] (a + b) * c = 42
Question: Natalia sold clips to 48 of her friends in April. How many clips did she sell? Answer: #### 72
The answer is 18. <reasoning>think step by step</reasoning><answer>5</answer>
def add(a, b):\n    return a + b\n
system user assistant You are a helpful assistant. Thank you! Please, could you help me?
"""


def build_tiny_model(
    arch: str,
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    vocab_size: int = 1024,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    seed: int = 0,
    tokenizer_from: str | None = None,
) -> Path:
    """A tokenizer (trained on `texts` plus built-in text, or `tokenizer_from`'s) and a random model, saved
    together as an HF folder."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown tiny architecture '{arch}'", hint=f"choose one of: {', '.join(ARCHITECTURES)}")
    if hidden % heads:
        raise ConfigError(f"tiny model: hidden ({hidden}) must be a multiple of heads ({heads})")

    from tunesmith.model.load import quiet_progress_bars  # lazy: model/load imports this module (tokenizer_for)

    quiet_progress_bars()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(texts, vocab_size) if tokenizer_from is None else _real_tokenizer(tokenizer_from, out)
    model = _build_model(
        arch, len(tokenizer), layers, hidden, heads, seed, tokenizer, trained_vocab=tokenizer_from is None
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _real_tokenizer(source: str, out: Path):
    """A real model's tokenizer; a SentencePiece file is also kept as tokenizer.model (what converters read)."""
    import shutil

    from tunesmith.model.load import load_tokenizer

    tokenizer = load_tokenizer(source)
    if source.endswith(".model"):
        shutil.copy(source, out / "tokenizer.model")
    return tokenizer


def build_tokenizer(texts: Iterable[str] | None, vocab_size: int):
    """A byte-level BPE tokenizer (Qwen2 split + NFC) with ChatML special tokens and chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [BUILTIN_TEXT, *(texts or [])]
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, unk_token=None, clean_up_tokenization_spaces=False
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def tiny_config(arch: str, vocab: int, layers: int, hidden: int, heads: int):
    """The transformers config of a `tiny:` model trained on its run's text (what `tunesmith plan` sizes)."""
    from tunesmith.model.families import family_config

    config = family_config(
        arch, vocab, layers, hidden, heads, dict(pad_token_id=None, eos_token_id=None, bos_token_id=None)
    )
    config.tie_word_embeddings = True  # as _build_model does for a trained vocabulary
    return config


def _build_model(
    arch: str, vocab: int, layers: int, hidden: int, heads: int, seed: int, tokenizer, trained_vocab: bool
):
    import torch
    from transformers import AutoModelForCausalLM

    from tunesmith.model.families import family_config

    special = dict(
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id
    )
    config = family_config(arch, vocab, layers, hidden, heads, special)
    if trained_vocab:
        config.tie_word_embeddings = True  # what `tiny:llama` / `tiny:qwen2` runs have always been
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
