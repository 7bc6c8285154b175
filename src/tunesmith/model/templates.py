"""Chat templates: the model's own, a built-in one, or a .jinja file, chosen once and saved with the run."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tunesmith.errors import ConfigError

BUILTIN = ("chatml", "llama3", "simple")
# Special tokens that close a turn in common chat templates (ChatML/Qwen, Llama-3, Phi-3, Gemma, GPT-style).
# Training trains them, generation stops at them, GGUF export marks them as end-of-turn.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def builtin_template(name: str) -> str:
    return (
        resources.files("tunesmith.model").joinpath(f"chat_templates/{name}.jinja").read_text(encoding="utf-8").strip()
    )


def resolve_chat_template(choice: str, tokenizer) -> str:
    """The template text for `model.chat_template`: auto keeps the tokenizer's own when it has one."""
    if choice == "auto":
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.chat_template
        has_chatml = "<|im_start|>" in tokenizer.get_vocab()
        return builtin_template("chatml" if has_chatml else "simple")
    if choice in BUILTIN:
        return builtin_template(choice)
    path = Path(choice)
    if path.suffix in (".jinja", ".j2", ".txt") and path.is_file():
        return path.read_text(encoding="utf-8")
    raise ConfigError(
        f"model.chat_template: '{choice}' is neither a built-in template nor a readable .jinja file",
        hint=f"use auto, one of {', '.join(BUILTIN)}, or a path to a .jinja file",
    )
