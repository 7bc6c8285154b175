"""`tunesmith run CONFIG`: the whole pipeline of a config (data check, train, eval, report, export)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="Config file (YAML or JSON).")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Override a config key (repeatable)."
    )
    parser.add_argument(
        "--smoke", action="store_true", help="A few examples and steps through every stage, to test the config."
    )
    parser.add_argument("--no-export", action="store_true", help="Stop after the report; skip merge/GGUF/Modelfile.")


def run(args: argparse.Namespace) -> int:
    from tunesmith.pipeline import print_summary, run_pipeline

    result = run_pipeline(args.config, args.set, smoke=args.smoke, export=not args.no_export)
    print_summary(result)
    return 0
