"""`tunesmith generate RUN_DIR|MODEL --prompt TEXT | --prompts FILE`: answers with the run's chat template."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="RUN_DIR|MODEL", help="A run directory (base + adapter) or a model (hub id, folder, .gguf)."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="One prompt (a user turn).")
    source.add_argument(
        "--prompts",
        metavar="FILE",
        help="Prompts file: .txt (one per line) or .jsonl ('prompt' or 'messages' per line).",
    )
    parser.add_argument(
        "-n", "--num-samples", type=int, default=1, help="Samples per prompt (use with --temperature > 0)."
    )
    parser.add_argument(
        "--temperature", type=float, default=0.0, help="Sampling temperature; 0 is greedy and deterministic."
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        help="Nucleus sampling: keep the smallest token set with this probability mass.",
    )
    parser.add_argument("--max-new-tokens", type=int, default=256, help="Longest answer in tokens.")
    parser.add_argument(
        "--repetition-penalty", type=float, default=1.0, help="Penalty for repeating tokens (1.0 = none)."
    )
    parser.add_argument("--stop", action="append", default=[], metavar="STR", help="Stop at this string (repeatable).")
    parser.add_argument("--seed", type=int, default=None, help="Seed for sampling (same seed, same samples).")
    system = parser.add_mutually_exclusive_group()
    system.add_argument(
        "--system", help="System prompt placed before each prompt (default: the one the run trained with)."
    )
    system.add_argument(
        "--no-system", action="store_true", help="No system prompt, even when the run trained with one."
    )
    parser.add_argument(
        "--tools",
        metavar="FILE.json",
        help="Function schemas (a JSON list, as a dataset's tools column) offered to prompts without their own.",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="Prompts generated at once.")
    parser.add_argument("--out", metavar="FILE.jsonl", help="Also write the results as JSONL.")
    parser.add_argument(
        "--checkpoint",
        metavar="NAME",
        help="Weights of a run: best, final or step-N (default: best/ when kept, else final/).",
    )


def print_weights(target: str, checkpoint: str | None) -> None:
    """One line on stderr naming the run's weights in use (kept off stdout, which carries the answers)."""
    import sys

    from tunesmith.model.from_run import checkpoint_label

    label = checkpoint_label(target, checkpoint)
    if label:
        print(f"weights: {target}/{label if label in ('best', 'final') else 'checkpoints/' + label}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tunesmith.errors import TunesmithError
    from tunesmith.generate.generate import GenerationSettings, generate_from, read_prompts, read_tools
    from tunesmith.run_dir import write_jsonl

    if args.num_samples < 1 or args.temperature < 0 or args.max_new_tokens < 1:
        raise TunesmithError("-n and --max-new-tokens must be at least 1, --temperature at least 0")
    if args.num_samples > 1 and args.temperature == 0:
        raise TunesmithError(
            f"-n {args.num_samples} with --temperature 0 gives {args.num_samples} identical answers",
            hint="add --temperature 0.8 (or higher) to sample",
        )
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        stop=args.stop,
        num_samples=args.num_samples,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    prompts = [args.prompt] if args.prompt is not None else read_prompts(args.prompts)
    tools = read_tools(args.tools) if args.tools else None
    print_weights(args.target, args.checkpoint)
    system = "" if args.no_system else args.system
    rows = generate_from(args.target, prompts, settings, system=system, checkpoint=args.checkpoint, tools=tools)
    for row in rows:
        print(f"### {row['prompt']}")
        for i, sample in enumerate(row["samples"], 1):
            print(f"[{i}] {sample}" if len(row["samples"]) > 1 else sample)
    if args.out:
        write_jsonl(Path(args.out), rows)
        print(f"wrote {len(rows)} rows to {args.out}")
    return 0
