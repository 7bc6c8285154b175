"""`tunesmith <command>`: a dispatch table with lazy imports, so `--help` is instant.

Each command module defines `add_arguments(parser)` and `run(args) -> int`; its heavy imports happen
inside `run`. User mistakes arrive as TunesmithError and print as a few lines with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from tunesmith import __version__

# name -> (module under tunesmith.cli, one-line help). Keep README's command tour in sync (a test checks).
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart", "Run the offline quickstart: data -> train -> eval -> report -> GGUF."),
    "run": ("run", "Run a config's whole pipeline: data check, train, eval, report, export."),
    "config": ("config", "Show or check config files."),
    "model": ("model", "Build tiny local models for tests and offline runs."),
    "data": ("data", "Check, measure, preview and prepare training data."),
    "plan": ("plan", "Estimate a run's memory by part and its time before training; say whether it fits."),
    "train": ("train", "Fine-tune a model (SFT full/LoRA/QLoRA, or GRPO) from a config."),
    "generate": ("generate", "Generate answers from a run or a model."),
    "chat": ("chat", "Chat with a run or a model in the terminal."),
    "eval": ("eval", "Evaluate a run on its test split, base vs tuned."),
    "report": ("report", "Write a self-contained HTML report of a run."),
    "export": ("export", "Merge, convert to GGUF, quantize, write an Ollama Modelfile, verify parity."),
    "verify": ("verify", "Prove a GGUF (from any tool) answers like a run's or a model folder's HF weights."),
    "rewards": ("rewards", "Try GRPO reward functions before training."),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunesmith",
        description="Fine-tune small LLMs and prove the result: data, train, eval, export.",
    )
    parser.add_argument("--version", action="version", version=f"tunesmith {__version__}")
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks for errors.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (module, help_text) in COMMANDS.items():
        cmd_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _module(module).add_arguments(cmd_parser)
    return parser


def _module(name: str):
    return importlib.import_module(f"tunesmith.cli.{name}")


def _command_in(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = _command_in(argv)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    debug = args.debug or os.environ.get("TUNESMITH_DEBUG") == "1"
    if not debug:
        _quiet_libraries()
    try:
        return int(_module(COMMANDS[args.command][0]).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        return _report_error(exc, debug)


def _quiet_libraries() -> None:
    """Keep library chatter (deprecation notes, dataset map bars) out of a user's terminal; --debug shows it."""
    import logging
    import warnings

    os.environ.setdefault("TUNESMITH_QUIET", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # 0.50 warns about an optional CPU kernel at import
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|peft|trl)\.")


def _report_error(exc: Exception, debug: bool) -> int:
    from tunesmith.errors import TunesmithError

    if debug:
        import traceback

        traceback.print_exc()
    if isinstance(exc, TunesmithError):
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        print(f"error: could not write {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
        print("  hint: free disk space and run the command again (training continues with --resume)", file=sys.stderr)
        return 1
    if debug:
        return 1
    print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
    print("  this is a tunesmith bug; rerun with --debug for the traceback and report it", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
