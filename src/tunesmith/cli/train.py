"""`tunesmith train CONFIG [--set k=v ...] [--smoke] [--resume] [--processes N [--nnodes M --node-rank R --master-addr HOST]]`."""

from __future__ import annotations

import argparse

from tunesmith.cli import add_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="Run config (YAML or JSON).")
    add_overrides(parser, "Override a config key, e.g. --set train.learning_rate=1e-4 (repeatable).")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="Whole pipeline in seconds: train.smoke_examples examples, train.smoke_steps steps, a tiny eval (writes runs/<name>-smoke).",
    )
    parser.add_argument(
        "--force", action="store_true", help="Train even when `tunesmith plan` says the run will not fit in memory."
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Continue the run from its latest complete checkpoint (same data order, optimizer and RNG state).",
    )
    launch = parser.add_argument_group("several processes (train.distributed picks DDP, FSDP or DeepSpeed)")
    launch.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="Processes on this node (one per GPU; on CPU, N copies over gloo).",
    )
    launch.add_argument(
        "--nnodes", type=int, default=1, metavar="M", help="Machines taking part (run the same command on each)."
    )
    launch.add_argument(
        "--node-rank", type=int, default=0, metavar="R", help="This machine's number, 0..M-1 (0 hosts the rendezvous)."
    )
    launch.add_argument(
        "--master-addr", default="127.0.0.1", metavar="HOST", help="Address of node 0, reachable from every node."
    )
    launch.add_argument(
        "--master-port", type=int, default=29500, metavar="PORT", help="Free TCP port on node 0 for the rendezvous."
    )
    launch.add_argument(
        "--print-launch",
        action="store_true",
        help="Print the torchrun / accelerate launch command of every node and exit.",
    )


def run(args: argparse.Namespace) -> int:
    from tunesmith.train.launch import Launch, launch_commands, needs_launch, run_launch

    launch = Launch(args.processes, args.nnodes, args.node_rank, args.master_addr, args.master_port)
    launch.check()
    if args.print_launch:
        print(launch_commands(launch, _train_args(args)))
        return 0
    if needs_launch(launch):
        from tunesmith.config.load import load_config

        load_config(args.config, args.overrides)  # a config mistake is reported once, before N processes start
        return run_launch(launch, _train_args(args))
    from tunesmith.train.api import train

    result = train(args.config, overrides=args.overrides, smoke=args.smoke, resume=args.resume, force=args.force)
    from tunesmith.run_dir import is_main_process

    if is_main_process():  # one summary per multi-process launch
        print(result.summary())
    return 0


def _train_args(args: argparse.Namespace) -> list[str]:
    """This command's arguments as each launched process receives them (launch options dropped)."""
    out = [args.config]
    for override in args.overrides:
        out += ["--set", override]
    return out + (["--smoke"] if args.smoke else []) + (["--resume"] if args.resume else [])
