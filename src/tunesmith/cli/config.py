"""`tunesmith config show FILE` and `tunesmith config check FILE...`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    show = sub.add_parser("show", help="Print the resolved config with every default and its help.")
    show.add_argument("file", nargs="?", help="Config file (YAML or JSON); omit to show the defaults.")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override a key, e.g. train.learning_rate=1e-4.")
    check = sub.add_parser("check", help="Validate config files; exit 0 when all are valid, 2 otherwise.")
    check.add_argument("files", nargs="+", help="Config files (YAML or JSON).")
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override a key before checking.")


def run(args: argparse.Namespace) -> int:
    from tunesmith.config import load_config
    from tunesmith.config.show import render_config
    from tunesmith.errors import ConfigError

    if args.action == "show":
        print(render_config(load_config(args.file, args.set)))
        return 0
    failed = 0
    for path in args.files:
        try:
            load_config(path, args.set)
            print(f"ok: {path}")
        except ConfigError as exc:
            failed += 1
            print(f"error: {exc}")
    return 2 if failed else 0
