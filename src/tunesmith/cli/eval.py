"""`tunesmith eval RUN_DIR`: loss, perplexity and generation metrics, base vs tuned, on the test split."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="A finished run directory.")
    parser.add_argument(
        "--data", metavar="FILE", help="JSONL file to evaluate on instead of the run's data/test.jsonl."
    )
    parser.add_argument(
        "--base",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Also evaluate the base model (default: eval.compare_base).",
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="OTHER_RUN",
        help="Other run directories to evaluate on the same prompts.",
    )
    parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N examples.")
    parser.add_argument(
        "--checkpoint",
        metavar="NAME",
        help="Weights of the run: best, final or step-N (default: best/ when kept, else final/).",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tunesmith.eval.evaluate import evaluate
    from tunesmith.eval.outputs import metrics_table

    result = evaluate(
        args.run_dir, data=args.data, base=args.base, compare=args.compare, limit=args.limit, checkpoint=args.checkpoint
    )
    console = Console()
    console.print(f"weights: {args.run_dir} {result['checkpoint']}/", markup=False)
    if result.get("note"):
        console.print(result["note"], markup=False)
    console.print(metrics_table(result))
    console.print(f"outputs and metrics written to {args.run_dir}/eval/")
    return 0
