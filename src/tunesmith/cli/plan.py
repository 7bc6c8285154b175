"""`tunesmith plan CONFIG [--set k=v] [--device cuda|mps|cpu] [--memory 24GB] [--json]`."""

from __future__ import annotations

import argparse

from tunesmith.cli import add_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="Run config (YAML or JSON).")
    add_overrides(parser, "Override a config key (repeatable).")
    parser.add_argument(
        "--device",
        choices=["cuda", "mps", "cpu"],
        default=None,
        help="Plan for this device (default: the config's train.device).",
    )
    parser.add_argument(
        "--memory",
        default=None,
        metavar="SIZE",
        help="Device memory to plan against, e.g. 24GB (default: what the device has free).",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="Plan the --smoke version of the config (config/smoke.py)."
    )
    parser.add_argument("--json", action="store_true", help="Print machine-readable JSON instead of the report.")


def run(args: argparse.Namespace) -> int:
    import json

    from tunesmith.config.load import load_config
    from tunesmith.plan.build import plan_config
    from tunesmith.plan.capacity import parse_size
    from tunesmith.plan.report import format_plan

    memory = parse_size(args.memory) if args.memory else None
    config = load_config(args.config, args.overrides)
    if args.smoke:
        from tunesmith.config.smoke import smoke

        config = smoke(config)
    plan = plan_config(config, args.device, memory)
    print(json.dumps(plan.to_dict(), indent=2, default=str) if args.json else format_plan(plan))
    return 0
