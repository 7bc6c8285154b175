"""`tunesmith quickstart`: generate the intent-to-JSON data, then run examples/quickstart.yaml end to end."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows",
        type=int,
        default=2000,
        help="Rows of intent-to-JSON data to draw (repeats are dropped, so fewer may be written).",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Override a quickstart config key."
    )
    parser.add_argument(
        "--no-export", action="store_true", help="Skip merge/GGUF/Modelfile (e.g. without the export extra)."
    )


def run(args: argparse.Namespace) -> int:
    from tunesmith.pipeline import print_summary
    from tunesmith.quickstart import run_quickstart

    print_summary(run_quickstart(rows=args.rows, overrides=args.set, export=not args.no_export))
    return 0
