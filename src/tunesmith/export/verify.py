"""`tunesmith verify` and export's parity step: one function judges any GGUF against an HF model.

The reference is a run's merged weights (its test prompts through its chat template and system prompt) or an
HF model folder (a few default prompts). The GGUF may come from tunesmith, llama.cpp's converter or anyone.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.errors import ConfigError, ExportError
from tunesmith.export.parity import FormatParity, Prompt, check_gguf

DEFAULT_PROMPT_COUNT = 4
DEFAULT_TOKENS = 16
DEFAULT_MESSAGES = [
    "Hello! Who are you?",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "What is 12 plus 30?",
]


class ParityFailed(ExportError):
    """A GGUF does not answer like its HF model (exit code 1)."""


def verify(
    run_or_model: str | Path,
    gguf_path: str | Path,
    prompts: int | None = None,
    tokens: int | None = None,
    lora: str | Path | None = None,
) -> FormatParity:
    """Judge `gguf_path` (with the LoRA GGUF `lora` applied, if given) against a run's merged weights or an HF
    model folder; the report holds the verdict."""
    gguf_path = Path(gguf_path)
    lora_path = Path(lora) if lora else None
    for path, flag in ((gguf_path, "FILE.gguf"), (lora_path, "--lora")):
        if path is not None and not path.is_file():
            raise ConfigError(f"{path}: no such GGUF file ({flag})", hint="pass the path of a .gguf file")
    model, tokenizer, prompt_list, n_tokens = reference(run_or_model, prompts, tokens)
    return compare(gguf_path, model, tokenizer, prompt_list, n_tokens, lora_path)


def reference(run_or_model: str | Path, prompts: int | None, tokens: int | None):
    """(float32 HF model, tokenizer, prompts, tokens to generate) for a run directory or a model folder."""
    from tunesmith.model.from_run import load_tuned
    from tunesmith.run_dir import RunDir, is_run_dir

    target = Path(run_or_model)
    if is_run_dir(str(target)):
        from tunesmith.export.merge import merge_dtype

        run = RunDir.of(target)
        config = run.config()
        model, tokenizer = load_tuned(target, dtype=merge_dtype(target), merged=True)  # as export merges it
        count = prompts or config.export.verify_prompts
        return model, tokenizer, run_prompts(run, tokenizer, count), tokens or config.export.verify_tokens
    if not (target / "config.json").is_file():
        raise ConfigError(
            f"{target}: neither a tunesmith run directory (config.yaml) nor an HF model folder (config.json)",
            hint="tunesmith verify RUN_DIR_OR_MODEL_FOLDER FILE.gguf",
        )
    model, tokenizer = load_tuned(target)
    return model, tokenizer, default_prompts(tokenizer, prompts or DEFAULT_PROMPT_COUNT), tokens or DEFAULT_TOKENS


def compare(
    gguf_path: Path, model, tokenizer, prompts: list[Prompt], n_tokens: int, lora_path: Path | None = None
) -> FormatParity:
    """The parity check export and verify share: HF model in float32, greedy, stops at EOS / end of turn;
    `lora_path` is a LoRA GGUF llama.cpp applies on top of `gguf_path` (the adapter export)."""
    import torch

    model = model.float().eval()
    torch.manual_seed(0)
    return check_gguf(gguf_path, model, tokenizer, prompts, n_tokens, stop_ids(tokenizer), lora_path)


def stop_ids(tokenizer) -> set[int]:
    from tunesmith.export.gguf import end_of_turn_token

    ids = {tokenizer.eos_token_id} - {None}
    if (eot := end_of_turn_token(tokenizer)) is not None:
        ids.add(tokenizer.convert_tokens_to_ids(eot))
    return ids


def run_prompts(run, tokenizer, count: int) -> list[Prompt]:
    """Up to `count` prompts from the run's test split (else validation), rendered through its chat template."""
    from tunesmith.run_dir import read_jsonl

    rows = []
    for split in ("test", "val"):
        path = run.split_file(split)
        rows += read_jsonl(path) if path.exists() else []
    prompts = [p for p in (_row_prompt(tokenizer, row) for row in rows) if p is not None][:count]
    return prompts or default_prompts(tokenizer, 1)


def _row_prompt(tokenizer, row: dict) -> Prompt | None:
    """Every turn before the last answer (system prompt and tool schemas included), or the first 32 tokens of a
    text row."""
    from tunesmith.data.tokenize import prompt_ids, render

    messages = row.get("messages") or []
    cut = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    if messages[:cut] and tokenizer.chat_template:
        tools = row.get("tools")  # the row's function schemas, rendered as in training
        text = render(tokenizer, messages[:cut], add_generation_prompt=True, tools=tools)
        return Prompt(prompt_ids(tokenizer, messages[:cut], tools), text)
    if row.get("text"):
        return _text_prompt(tokenizer, row["text"])
    return None


def _text_prompt(tokenizer, text: str) -> Prompt:
    """Plain text as a text run trains on it: special tokens (BOS) added by the tokenizer."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:32]
    head = tokenizer.decode(ids)
    return Prompt(list(tokenizer(head, add_special_tokens=True)["input_ids"]), head, add_special=True)


def default_prompts(tokenizer, count: int) -> list[Prompt]:
    """Chat prompts through the model's template, or the same questions as plain text without one."""
    from tunesmith.data.tokenize import prompt_ids, render

    prompts = []
    for question in (DEFAULT_MESSAGES * (count // len(DEFAULT_MESSAGES) + 1))[:count]:
        if tokenizer.chat_template:
            messages = [{"role": "user", "content": question}]
            prompts.append(
                Prompt(prompt_ids(tokenizer, messages), render(tokenizer, messages, add_generation_prompt=True))
            )
        else:
            prompts.append(_text_prompt(tokenizer, question))
    return prompts


def write_parity(
    path: Path,
    reports: dict[str, FormatParity],
    prompts: int,
    tokens: int,
    skipped: str | None = None,
    checkpoint: str | None = None,
) -> dict:
    """parity.json: overall verdict, the checkpoint exported (when known), and per file its type, bounds,
    measured values and failures."""
    if skipped:
        payload = {"verdict": "skipped", "skipped_by": skipped, "formats": {}}
    else:
        verdict = "passed" if all(r.passed for r in reports.values()) else "failed"
        payload = {
            "verdict": verdict,
            "prompts": prompts,
            "tokens": tokens,
            "formats": {k: r.to_dict() for k, r in reports.items()},
        }
    if checkpoint is not None:
        payload["checkpoint"] = checkpoint
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return payload


def failure_message(reports: dict[str, FormatParity]) -> str:
    """'parity FAILED' with what diverged, one line per failing file (first failure of each)."""
    lines = ["parity FAILED:"]
    for name, report in reports.items():
        if not report.passed:
            lines.append(f"  {name} ({report.file}, type {report.gguf_type}): {report.failures[0]}")
            lines += [f"    also: {f}" for f in report.failures[1:3]]
    return "\n".join(lines)


def summary_line(name: str, report: FormatParity) -> str:
    """One line per file for the CLI: verdict first, then the numbers against their bounds."""
    m, b = report.measured, report.bounds
    parts = [
        f"tokenization {m['tokenization_match_rate']:.0%}",
        f"greedy tokens {m['greedy_match_rate']:.0%} identical",
    ]
    parts.append(
        f"max logit diff {m['max_logit_diff']:.2e}"
        + (f" (bound {b['max_logit_diff']:g})" if b["max_logit_diff"] else "")
    )
    if b["min_top1_agreement"] is not None:
        parts.append(f"top-1 agreement {m['top1_agreement']:.0%} (bound {b['min_top1_agreement']:.0%})")
    parts.append(
        f"mean KL {m['mean_kl']:.2e}" + (f" (bound {b['max_mean_kl']:g})" if b["max_mean_kl"] is not None else "")
    )
    return f"parity {name}: {report.verdict.upper()} ({report.gguf_type}): " + ", ".join(parts)
