"""`tunesmith export RUN_DIR`: merge, GGUF, quantize, Ollama Modelfile, and the parity check."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="A finished run directory (runs/<name>).")
    parser.add_argument(
        "--merged",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Keep the merged safetensors model in OUT/merged (default: config export.merged).",
    )
    parser.add_argument(
        "--gguf",
        nargs="+",
        metavar="TYPE",
        default=None,
        help="GGUF types to write: f32 f16 bf16 q8_0 q6_k q5_k_m q5_0 q4_k_m q4_0, or none (default: config export.gguf).",
    )
    parser.add_argument(
        "--out", default=None, help="Output folder (default: config export.out_dir, else RUN_DIR/export)."
    )
    parser.add_argument(
        "--adapter-gguf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Also write the base GGUF + the LoRA as a GGUF beside it, and Modelfile.adapter with ADAPTER "
        "(default: config export.adapter_gguf).",
    )
    parser.add_argument("--no-verify", action="store_true", help="Skip the llama.cpp vs HF parity check.")
    parser.add_argument(
        "--checkpoint",
        metavar="NAME",
        help="Weights of the run: best, final or step-N (default: best/ when kept, else final/).",
    )


def run(args: argparse.Namespace) -> int:
    from tunesmith.export.export_run import export_run
    from tunesmith.run_dir import RunDir

    run_dir = RunDir.of(args.run_dir)
    run_dir.require_finished()
    config = run_dir.config().export
    merged = config.merged if args.merged is None else args.merged
    skipped_by = "--no-verify" if args.no_verify else "config export.verify: false"
    result = export_run(
        run_dir.root,
        gguf_types=args.gguf,
        out_dir=args.out,
        verify=config.verify and not args.no_verify,
        merged=merged,
        adapter_gguf=args.adapter_gguf,
        checkpoint=args.checkpoint,
        skipped_by=skipped_by,
    )
    _print(result)
    return 0


def _print(result) -> None:
    print(
        f"weights: {result.checkpoint}/"
        if result.checkpoint in ("best", "final")
        else f"weights: checkpoints/{result.checkpoint}/"
    )
    if result.merged_dir:
        print(f"merged model: {result.merged_dir}")
    for gguf_type, path in result.gguf_files.items():
        types = ", ".join(f"{n} {k}" for k, n in result.tensor_types.get(gguf_type, {}).items())
        print(f"gguf {gguf_type}: {path}  (tensors: {types})")
    from tunesmith.export.verify import summary_line

    for gguf_type, report in result.parity.items():
        print(summary_line(gguf_type, report))
    for role, path in result.adapter_files.items():
        print(f"adapter gguf {role}: {path}")
    if result.converter:
        print(f"converted by: {result.converter}")
    if result.parity_file:
        note = "" if result.parity else "  (parity NOT checked: --no-verify / export.verify: false)"
        print(f"parity report: {result.parity_file}{note}")
    if result.modelfile:
        note = "" if result.template_exact else f"  (TEMPLATE approximated: {'; '.join(result.template_notes)})"
        print(f"Modelfile: {result.modelfile}  (chat template: {result.template_family}){note}")
        for command in result.ollama_commands:
            print(f"  {command}")
    if result.adapter_modelfile:
        print(f"Modelfile with ADAPTER: {result.adapter_modelfile}")
