"""Prove a GGUF answers like the HF model: same prompt ids, greedy tokens compared, first-step logits diffed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tunesmith.errors import ExportError
from tunesmith.export.quantize import require_llama_cpp

STRICT_TYPES = ("f32", "f16", "adapter-f16")  # these must reproduce the HF tokens exactly on tiny models


@dataclass
class Prompt:
    """A verification prompt: the HF ids and the text llama.cpp tokenizes for comparison."""

    ids: list[int]
    text: str


@dataclass
class PromptParity:
    index: int
    equal: bool
    first_divergence: int | None  # index into the generated tokens, None when equal
    max_logit_diff: float  # on the first generated step
    tokenization_equal: bool
    hf_tokens: list[int] = field(default_factory=list)
    gguf_tokens: list[int] = field(default_factory=list)
    hf_margin_at_divergence: float | None = None  # top-1 minus top-2 HF logit where they split
    near_tie: bool = False  # diverged where HF's top two logits were closer than the measured logit error


@dataclass
class FormatParity:
    gguf_type: str
    file: str
    match_rate: float  # fraction of prompts whose greedy tokens are identical
    max_logit_diff: float
    tokenization_match_rate: float
    prompts: list[PromptParity]

    def to_dict(self) -> dict:
        return asdict(self)


def hf_greedy(model, ids: list[int], n_tokens: int, stop_ids: set[int]) -> tuple[list[int], np.ndarray, list[np.ndarray]]:
    """Greedy tokens from an HF model (KV cache), the first-step logits and each step's logits."""
    import torch

    tokens: list[int] = []
    steps: list[np.ndarray] = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        for _ in range(n_tokens):
            logits = out.logits[0, -1].float().numpy()
            steps.append(logits)
            tokens.append(int(logits.argmax()))
            if tokens[-1] in stop_ids:
                break
            out = model(input_ids=torch.tensor([[tokens[-1]]]), past_key_values=out.past_key_values, use_cache=True)
    return tokens, steps[0], steps


def gguf_greedy(llm, ids: list[int], n_tokens: int, stop_ids: set[int]) -> tuple[list[int], np.ndarray]:
    """Greedy tokens from llama.cpp on the same ids, and its first-step logits."""
    llm.reset()
    llm.eval(ids)
    tokens: list[int] = []
    first = None
    for _ in range(n_tokens):
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        first = logits.copy() if first is None else first
        tokens.append(int(logits.argmax()))
        if tokens[-1] in stop_ids:
            break
        llm.eval([tokens[-1]])
    return tokens, first


def open_gguf(path: Path, n_ctx: int, lora_path: Path | None = None):
    """llama.cpp on one thread with an f32 KV cache, so only the file's weights differ from HF (plus a LoRA
    GGUF applied at load time when `lora_path` is given)."""
    llama_cpp = require_llama_cpp()
    f32 = 0  # GGML_TYPE_F32; llama.cpp's default f16 cache alone moves logits by ~1e-2
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False, type_k=f32, type_v=f32, n_threads=1, seed=0,
        lora_path=str(lora_path) if lora_path else None,
    )


def check_format(
    path: Path, gguf_type: str, model, prompts: list[Prompt], n_tokens: int, stop_ids: set[int], lora_path: Path | None = None
) -> FormatParity:
    """Compare one GGUF (with a LoRA GGUF on top, if given) with the HF model on every prompt."""
    n_ctx = max(len(p.ids) for p in prompts) + n_tokens + 8
    llm = open_gguf(path, n_ctx, lora_path)
    try:
        results = [_compare(i, llm, model, p, n_tokens, stop_ids) for i, p in enumerate(prompts)]
    finally:
        llm.close()
    return FormatParity(
        gguf_type=gguf_type,
        file=path.name,
        match_rate=sum(r.equal for r in results) / len(results),
        max_logit_diff=max(r.max_logit_diff for r in results),
        tokenization_match_rate=sum(r.tokenization_equal for r in results) / len(results),
        prompts=results,
    )


def _compare(index: int, llm, model, prompt: Prompt, n_tokens: int, stop_ids: set[int]) -> PromptParity:
    gguf_ids = llm.tokenize(prompt.text.encode("utf-8"), add_bos=False, special=True)
    hf_tokens, hf_first, hf_steps = hf_greedy(model, prompt.ids, n_tokens, stop_ids)
    gguf_tokens, gguf_first = gguf_greedy(llm, prompt.ids, n_tokens, stop_ids)
    diverge = next((i for i, (a, b) in enumerate(zip(hf_tokens, gguf_tokens)) if a != b), None)
    if diverge is None and len(hf_tokens) != len(gguf_tokens):
        diverge = min(len(hf_tokens), len(gguf_tokens))
    margin = None
    if diverge is not None and diverge < len(hf_steps):
        top2 = np.sort(hf_steps[diverge])[-2:]
        margin = float(top2[1] - top2[0])
    max_diff = float(np.abs(hf_first - gguf_first).max())
    return PromptParity(
        index=index,
        equal=diverge is None,
        first_divergence=diverge,
        max_logit_diff=max_diff,
        tokenization_equal=list(gguf_ids) == list(prompt.ids),
        hf_tokens=hf_tokens,
        gguf_tokens=gguf_tokens,
        hf_margin_at_divergence=margin,
        near_tie=margin is not None and margin <= 2 * max_diff,
    )


def require_exact(result: FormatParity) -> None:
    """f32/f16 must reproduce HF's tokens (near-ties excepted) and ids; explain what differs when they do not."""
    if result.gguf_type not in STRICT_TYPES:
        return
    bad_tok = [p.index for p in result.prompts if not p.tokenization_equal]
    if bad_tok:
        raise ExportError(
            f"parity: llama.cpp tokenizes {len(bad_tok)} of {len(result.prompts)} prompts differently from the HF "
            f"tokenizer ({result.file}, prompts {bad_tok}); Ollama/llama.cpp users would feed the model other ids",
            hint="the GGUF tokenizer metadata (pre-tokenizer, scores, special tokens) does not match; see parity.json",
        )
    # A split where HF's top two logits differ by less than the rounding error is a coin flip, not a bug.
    bad = [p for p in result.prompts if not p.equal and not p.near_tie]
    if bad:
        first = bad[0]
        raise ExportError(
            f"parity: {result.gguf_type} GGUF {result.file} generates different tokens from the HF merged model on "
            f"{len(bad)} of {len(result.prompts)} prompts (prompt {first.index}: first divergence at token "
            f"{first.first_divergence}, step-0 max logit diff {first.max_logit_diff:.3g}, HF top-2 margin "
            f"{first.hf_margin_at_divergence})",
            hint="a wrong conversion (tensor layout, rope, norms) usually shows as a large step-0 logit diff; "
            "a tiny diff with a tiny margin is a near-tie. Details in export/parity.json",
        )
