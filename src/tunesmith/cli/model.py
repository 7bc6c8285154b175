"""`tunesmith model tiny`: build a tiny local model (tokenizer + random weights) for tests and offline runs."""

from __future__ import annotations

import argparse

from tunesmith.model.families import FAMILIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    tiny = sub.add_parser("tiny", help="Build a small random model on a trained or a real model's tokenizer.")
    tiny.add_argument(
        "--arch", choices=list(FAMILIES), default="qwen2", help="Model family (smollm: Llama with tied embeddings)."
    )
    tiny.add_argument(
        "--tokenizer",
        metavar="FROM",
        default=None,
        help="Use this model's tokenizer (folder, .gguf or SentencePiece .model) instead of training one; "
        "llama.cpp's GGUF converter recognises real tokenizers, not freshly trained ones.",
    )
    tiny.add_argument("--out", required=True, help="Output folder (a normal Hugging Face model folder).")
    tiny.add_argument(
        "--text",
        action="append",
        default=[],
        metavar="FILE",
        help="Text file(s) to train the tokenizer on (built-in text if none).",
    )
    tiny.add_argument("--vocab-size", type=int, default=1024, help="Largest vocabulary size.")
    tiny.add_argument("--layers", type=int, default=2, help="Transformer layers.")
    tiny.add_argument("--hidden", type=int, default=64, help="Hidden size.")
    tiny.add_argument("--heads", type=int, default=4, help="Attention heads.")
    tiny.add_argument("--seed", type=int, default=0, help="Seed for the weights.")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunesmith.errors import TunesmithError
    from tunesmith.model.tiny import build_tiny_model

    if args.tokenizer and args.text:
        raise TunesmithError("--tokenizer and --text exclude each other: --text trains a new tokenizer")
    texts = []
    for name in args.text:
        path = Path(name)
        if not path.is_file():
            raise TunesmithError(f"--text {name}: no such file")
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
    out = build_tiny_model(
        args.arch,
        args.out,
        texts,
        args.vocab_size,
        args.layers,
        args.hidden,
        args.heads,
        args.seed,
        tokenizer_from=args.tokenizer,
    )
    print(f"tiny {args.arch} model written to {out}")
    return 0
