"""`tunesmith train CONFIG [--set k=v ...] [--smoke] [--resume]`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="Run config (YAML or JSON).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="Override a config key, e.g. --set train.learning_rate=1e-4 (repeatable).")
    parser.add_argument("--smoke", action="store_true", help="Whole pipeline in seconds: train.smoke_examples examples, train.smoke_steps steps, a tiny eval (writes runs/<name>-smoke).")
    parser.add_argument("--resume", action="store_true", help="Continue the run from its latest complete checkpoint (same data order, optimizer and RNG state).")


def run(args: argparse.Namespace) -> int:
    from tunesmith.train.api import train

    result = train(args.config, overrides=args.overrides, smoke=args.smoke, resume=args.resume)
    from tunesmith.run_dir import is_main_process

    if is_main_process():  # one summary per multi-process launch
        print(result.summary())
    return 0
