"""`tunesmith config show FILE` and `tunesmith config check FILE...`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    show = sub.add_parser("show", help="Print the resolved config with every default and its help.")
    show.add_argument("file", nargs="?", help="Config file (YAML or JSON); omit to show the defaults.")
    show.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Override a key, e.g. train.learning_rate=1e-4."
    )
    check = sub.add_parser(
        "check",
        help="Validate config files as `train` would before training (keys, values, data, rewards, paths); "
        "exit 0 when all pass, 2 otherwise.",
    )
    check.add_argument("files", nargs="+", help="Config files (YAML or JSON).")
    check.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Override a key before checking."
    )
    check.add_argument(
        "--schema-only",
        action="store_true",
        help="Check keys and values only: no data, model or reward is read "
        "(a config for another machine or a later step).",
    )


def run(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.config.show import render_config

    if args.action == "show":
        print(render_config(load_config(args.file, args.set)))
        return 0
    failed = sum(not _check(path, args.set, args.schema_only) for path in args.files)
    return 2 if failed else 0


def _check(path: str, overrides: list[str], schema_only: bool) -> bool:
    """Print ok or every problem of one config; whether it passed."""
    from tunesmith.config import load_config
    from tunesmith.errors import ConfigError
    from tunesmith.preflight import preflight_problems

    try:
        config = load_config(path, overrides)
    except ConfigError as exc:
        print(f"error: {exc}")
        return False
    problems = [] if schema_only else preflight_problems(config)
    if problems:
        print(f"error: {path}: `tunesmith train` would refuse this config:")
        print("\n".join("  " + line for problem in problems for line in problem.splitlines()))
        return False
    print(f"ok: {path}")
    return True
