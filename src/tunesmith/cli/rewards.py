"""`tunesmith rewards dry-run CONFIG`: score sampled completions with every reward before paying for training.

Exit codes: 0 when every reward works (constant rewards are warnings), 1 when a reward raises or returns
something other than one number per completion (training would stop at its first step), 1 as well for a
constant reward with --strict, 2 for config/data mistakes.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    dry = sub.add_parser(
        "dry-run", help="Generate with the starting model and print each reward's score per completion."
    )
    dry.add_argument("config", help="GRPO config file (YAML or JSON) with grpo.rewards.")
    dry.add_argument("-n", "--num-prompts", type=int, default=8, help="Training prompts to try (default 8).")
    dry.add_argument("-g", "--generations", type=int, default=1, help="Completions sampled per prompt (default 1).")
    dry.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a config key, e.g. grpo.temperature=0.7.",
    )
    dry.add_argument(
        "--strict", action="store_true", help="Also exit 1 when a reward is constant across all completions."
    )
    sub.add_parser("list", help="List the built-in rewards and their options.")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list()
    from pathlib import Path

    from rich.console import Console

    from tunesmith.config import load_config
    from tunesmith.rewards.dry_run import dry_run, result_table

    config = load_config(args.config, args.set)
    result = dry_run(config, n=args.num_prompts, generations=args.generations, base_dir=Path(args.config).parent)
    console = Console()
    console.print(result_table(result, console.width))
    for line in result.problems():
        console.print(line, style="red" if line.startswith("error") else "yellow", markup=False, highlight=False)
    if result.broken or (args.strict and result.constant):
        return 1
    console.print(f"ok: {len(result.checks)} reward(s) scored {len(result.completions)} completions", markup=False)
    return 0


def _list() -> int:
    import inspect

    from tunesmith.rewards.builtin import BUILTINS, FORMAT_PATTERNS

    for name, func in BUILTINS.items():
        options = [p for p in inspect.signature(func).parameters.values() if p.kind is p.KEYWORD_ONLY]
        listed = ", ".join(f"{p.name}={p.default!r}" for p in options)
        print(f"{name}: {inspect.getdoc(func).splitlines()[0]}\n  options: {listed or 'none'}")
    print(f"format patterns: {', '.join(FORMAT_PATTERNS)}")
    return 0
