"""`tunesmith data check|stats|preview`: parse, call one library function, print."""

from __future__ import annotations

import argparse
import json
import sys

from tunesmith.cli import add_overrides

FORMATS = ("auto", "messages", "sharegpt", "alpaca", "prompt_completion", "text", "preference", "unpaired_preference")
MODEL_HELP = "Model whose tokenizer and chat template count/render tokens (hub id, folder, .gguf, tiny:qwen2)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    check = sub.add_parser(
        "check", help="Report every problem in a data file or a config's sources as FILE:LINE: message."
    )
    check.add_argument(
        "target",
        metavar="FILE|CONFIG",
        help="A data file/folder (.jsonl/.json/.csv/.tsv/.parquet/.txt) or a config file.",
    )
    check.add_argument("--format", choices=FORMATS, default="auto", help="Row format of a data file (default: detect).")
    check.add_argument(
        "--model", default=None, help=MODEL_HELP + " With it, rows longer than --max-length are reported."
    )
    check.add_argument(
        "--max-length", type=int, default=1024, help="Token limit for the length check of a data file (needs --model)."
    )
    add_overrides(check, "Override a key of a config target (repeatable).")
    check.add_argument(
        "--max-problems", type=int, default=200, help="Print at most this many problems (all are counted)."
    )

    stats = sub.add_parser(
        "stats", help="Rows per source/split, tokens per example, cut shares, recommended max_length."
    )
    stats.add_argument(
        "target", metavar="FILE|CONFIG", help="A data file/folder or a config file (uses its model and sources)."
    )
    stats.add_argument(
        "--model", default=None, help=MODEL_HELP + " Required for a data file; overrides a config's model."
    )
    stats.add_argument(
        "--chat-template", default=None, help="auto, chatml, llama3, simple or a .jinja file (default: the model's)."
    )
    stats.add_argument("--format", choices=FORMATS, default="auto", help="Row format of a data file (default: detect).")
    stats.add_argument(
        "--keep", type=float, default=0.99, help="Share of examples the recommended max_length keeps whole."
    )
    add_overrides(stats, "Override a key of a config target (repeatable).")
    stats.add_argument("--json", action="store_true", help="Print machine-readable JSON instead of the report.")

    preview = sub.add_parser("preview", help="Render examples through the chat template with the loss tokens marked.")
    preview.add_argument(
        "target", metavar="FILE|CONFIG", help="A data file/folder or a config file (uses its model and loss_on)."
    )
    preview.add_argument("-n", type=int, default=3, help="How many examples to show.")
    preview.add_argument(
        "--model", default=None, help=MODEL_HELP + " Required for a data file; overrides a config's model."
    )
    preview.add_argument(
        "--chat-template", default=None, help="auto, chatml, llama3, simple or a .jinja file (default: the model's)."
    )
    preview.add_argument(
        "--format", choices=FORMATS, default="auto", help="Row format of a data file (default: detect)."
    )
    preview.add_argument(
        "--loss-on",
        choices=["assistant", "all", "last_assistant"],
        default=None,
        help="Which tokens get loss (default: the config's, else assistant).",
    )
    preview.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="Truncate at this many tokens (default: the config's data.max_length).",
    )
    add_overrides(preview, "Override a key of a config target (repeatable).")
    preview.add_argument(
        "--color",
        choices=["auto", "always", "never"],
        default="auto",
        help="Colour loss tokens (auto: on a terminal), else [brackets].",
    )


def run(args: argparse.Namespace) -> int:
    return {"check": _check, "stats": _stats, "preview": _preview}[args.action](args)


def _check(args: argparse.Namespace) -> int:
    from tunesmith.data.check import check_target

    result = check_target(args.target, args.format, args.model, args.max_length, overrides=args.overrides)
    for problem in result.problems[: args.max_problems]:
        print(problem)
    hidden = result.total - min(len(result.problems), args.max_problems)
    if hidden > 0:
        print(f"... and {hidden} more")
    print(("ok: " if not result.total else "") + result.summary())
    for note in result.notes():
        print(note)
    return 1 if result.total else 0


def _stats(args: argparse.Namespace) -> int:
    from tunesmith.data.stats import format_stats, stats_target

    stats = stats_target(args.target, args.model, args.chat_template, args.keep, args.format, overrides=args.overrides)
    print(json.dumps(stats.to_dict(), indent=2) if args.json else format_stats(stats))
    return 0


def _preview(args: argparse.Namespace) -> int:
    from tunesmith.data.preview import as_brackets, as_rich, preview_target

    previews = preview_target(
        args.target,
        args.n,
        args.model,
        args.chat_template,
        args.loss_on,
        args.max_length,
        args.format,
        overrides=args.overrides,
    )
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    console = None
    if color:
        from rich.console import Console

        console = Console(force_terminal=True, highlight=False)
    for preview in previews:
        part = f" ({preview.part})" if preview.part else ""
        print(
            f"--- example {preview.number}{part}: {preview.tokens} tokens, {preview.loss_tokens} with loss"
            + ("" if color else " [in brackets]")
        )
        console.print(as_rich(preview)) if console else print(as_brackets(preview))
        for warning in preview.warnings:
            print(f"warning: {warning}")
    return 0
