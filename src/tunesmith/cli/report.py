"""`tunesmith report RUN_DIR`: a self-contained HTML report of a run."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="A run directory.")
    parser.add_argument("--out", metavar="FILE", help="Where to write the report (default: RUN_DIR/report.html).")


def run(args: argparse.Namespace) -> int:
    from tunesmith.report.build import build_report
    from tunesmith.tracking import log_report

    path = build_report(args.run_dir, out=args.out)
    print(f"report written to {path}")
    logged = log_report(args.run_dir, path)
    if logged:
        print(logged)
    return 0
