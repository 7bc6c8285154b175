"""`tunesmith chat RUN_DIR|MODEL`: a multi-turn terminal chat with streamed replies."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="RUN_DIR|MODEL", help="A run directory (base + adapter) or a model (hub id, folder, .gguf)."
    )
    system = parser.add_mutually_exclusive_group()
    system.add_argument("--system", help="System prompt for the conversation (default: the one the run trained with).")
    system.add_argument(
        "--no-system", action="store_true", help="No system prompt, even when the run trained with one."
    )
    parser.add_argument("--temperature", type=float, default=0.7, help="Sampling temperature; 0 is greedy.")
    parser.add_argument("--top-p", type=float, default=0.9, help="Nucleus sampling probability mass.")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="Longest reply in tokens.")
    parser.add_argument(
        "--repetition-penalty", type=float, default=1.0, help="Penalty for repeating tokens (1.0 = none)."
    )
    parser.add_argument("--seed", type=int, default=None, help="Seed for sampling.")
    parser.add_argument(
        "--tools",
        metavar="FILE.json",
        help="Function schemas (a JSON list, as a dataset's tools column) rendered into every prompt.",
    )
    parser.add_argument("--base", action="store_true", help="Chat with the run's base model instead of the tuned one.")
    parser.add_argument(
        "--checkpoint",
        metavar="NAME",
        help="Weights of a run: best, final or step-N (default: best/ when kept, else final/).",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from tunesmith.cli.generate import print_weights
    from tunesmith.generate.chat import ChatSession, chat_loop
    from tunesmith.generate.generate import GenerationSettings, load_for_generation, read_tools

    tools = read_tools(args.tools) if args.tools else None  # a bad file fails before the model loads
    if not args.base:
        print_weights(args.target, args.checkpoint)
    model, tokenizer = load_for_generation(args.target, base=args.base, checkpoint=args.checkpoint)
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )
    system = "" if args.no_system else args.system
    if system is None:
        from tunesmith.model.from_run import run_system_prompt

        system = run_system_prompt(args.target)
        if system:
            print(f"system prompt (the run's): {system}")
    session = ChatSession(model, tokenizer, system=system, settings=settings, tools=tools)

    def write_piece(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    def read(prompt: str) -> str:
        line = input(prompt)
        if not line.startswith("/") and line.strip():
            sys.stdout.write("assistant> ")
        return line

    chat_loop(session, read=read, write=print, write_piece=write_piece)
    return 0
