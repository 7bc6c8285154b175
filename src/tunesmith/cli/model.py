"""`tunesmith model tiny`: build a tiny local model (tokenizer + random weights) for tests and offline runs."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    tiny = sub.add_parser("tiny", help="Train a byte-level BPE tokenizer and build a small random Llama/Qwen2 model.")
    tiny.add_argument("--arch", choices=["llama", "qwen2"], default="qwen2", help="Model architecture.")
    tiny.add_argument("--out", required=True, help="Output folder (a normal Hugging Face model folder).")
    tiny.add_argument("--text", action="append", default=[], metavar="FILE", help="Text file(s) to train the tokenizer on (built-in text if none).")
    tiny.add_argument("--vocab-size", type=int, default=1024, help="Largest vocabulary size.")
    tiny.add_argument("--layers", type=int, default=2, help="Transformer layers.")
    tiny.add_argument("--hidden", type=int, default=64, help="Hidden size.")
    tiny.add_argument("--heads", type=int, default=4, help="Attention heads.")
    tiny.add_argument("--seed", type=int, default=0, help="Seed for the weights.")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunesmith.errors import TunesmithError
    from tunesmith.model.tiny import build_tiny_model

    texts = []
    for name in args.text:
        path = Path(name)
        if not path.is_file():
            raise TunesmithError(f"--text {name}: no such file")
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
    out = build_tiny_model(args.arch, args.out, texts, args.vocab_size, args.layers, args.hidden, args.heads, args.seed)
    print(f"tiny {args.arch} model written to {out}")
    return 0
