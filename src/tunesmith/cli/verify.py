"""`tunesmith verify RUN_OR_MODEL FILE.gguf`: judge any GGUF against the HF model it should equal."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", metavar="RUN_OR_MODEL", help="A finished run directory, or an HF model folder.")
    parser.add_argument(
        "gguf", metavar="FILE.gguf", help="The GGUF file to judge (written by tunesmith or any other tool)."
    )
    parser.add_argument(
        "--prompts", type=int, default=None, help="How many prompts (default: the run's export.verify_prompts, else 4)."
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="Greedy tokens per prompt (default: the run's export.verify_tokens, else 16).",
    )
    parser.add_argument(
        "--lora",
        default=None,
        metavar="LORA.gguf",
        help="A LoRA GGUF to apply on top of FILE.gguf (as Ollama's ADAPTER line does); RUN_OR_MODEL is then the merged model.",
    )
    parser.add_argument("--report", default=None, metavar="FILE.json", help="Also write the full parity report here.")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunesmith.export.verify import failure_message, summary_line, verify, write_parity

    report = verify(args.reference, args.gguf, prompts=args.prompts, tokens=args.tokens, lora=args.lora)
    name = Path(args.gguf).name
    print(summary_line(name, report))
    if args.report:
        write_parity(Path(args.report), {name: report}, report.measured["prompts"], args.tokens or 0)
        print(f"parity report: {args.report}")
    if not report.passed:
        print(failure_message({name: report}))
        return 1
    return 0
