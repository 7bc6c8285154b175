"""Tiny local models: a byte-level BPE tokenizer trained on given text plus a small random Llama/Qwen2.

They exist so that tests and the offline quickstart run with no download. The tokenizer uses Qwen2's split
rule and NFC so that `AutoTokenizer` (which swaps in Qwen2's pre-tokenizer for model_type qwen2) tokenizes
exactly as at training time for both architectures.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tunesmith.errors import ConfigError

ARCHITECTURES = ("llama", "qwen2")
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
) -> Path:
    """Train a tokenizer on `texts` (plus built-in text), build a random model, save both as an HF folder."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown tiny architecture '{arch}'", hint=f"choose one of: {', '.join(ARCHITECTURES)}")
    if hidden % heads:
        raise ConfigError(f"tiny model: hidden ({hidden}) must be a multiple of heads ({heads})")

    from tunesmith.model.load import quiet_progress_bars  # lazy: model/load imports this module (tokenizer_for)

    quiet_progress_bars()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(texts, vocab_size)
    model = _build_model(arch, len(tokenizer), layers, hidden, heads, seed, tokenizer)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


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


def _build_model(arch: str, vocab: int, layers: int, hidden: int, heads: int, seed: int, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    config_cls = LlamaConfig if arch == "llama" else Qwen2Config
    config = config_cls(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        rms_norm_eps=1e-6,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
