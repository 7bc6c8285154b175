"""Prove a GGUF answers like the HF model, with a verdict against absolute bounds per GGUF type.

For each prompt the HF model generates greedily; llama.cpp then reads the same ids (prompt + HF continuation)
in one pass, so every position's logits can be compared with HF's. The GGUF passes when
- llama.cpp tokenizes every prompt to HF's ids (and adds BOS exactly when HF does),
- float and q8_0 files: its top-1 token equals HF's greedy token at every generated position, except where
  HF's own top-2 margin is below the type's fixed near-tie margin (a coin flip, not a bug), and the largest |logit
  difference| over all positions stays under the type's bound;
- lower-bit files: the top-1 tokens agree on enough positions and the mean KL(HF || GGUF) stays small.
The bounds are fixed numbers, never scaled by the error they judge; parity.json records them with the
measured values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tunesmith.export.quantize import require_llama_cpp


@dataclass(frozen=True)
class Bounds:
    """What a GGUF of one type must meet; None means "not judged on this" for that type."""

    max_logit_diff: float | None  # max |HF - GGUF| logit over all positions and vocabulary entries
    greedy_tokens: bool  # top-1 must equal HF's greedy token at every generated position (near ties excused)
    near_tie_margin: float = 0.0  # HF top-2 logit margin below which a greedy split is a coin flip, not a bug
    min_top1_agreement: float | None = None  # share of all positions whose top-1 token agrees
    max_mean_kl: float | None = None  # mean KL(HF || GGUF) over all positions, in nats


# Low-bit mean KL: correct SmolLM2-135M q4_k_m files measured 0.048 (4 prompts x 24 tokens; 0.042 of it is weight
# rounding alone) and 0.105 (a 24-step fine-tune, 2 prompts x 16 tokens); bugs planted in the real q4_k_m file
# measured 0.30 (rms epsilon), 0.69 (two layers' attn_q swapped), 12.1 (ids shifted): the bound is 0.2.
_LOW_BIT = Bounds(max_logit_diff=None, greedy_tokens=False, min_top1_agreement=0.8, max_mean_kl=0.2)
# Measured max logit differences over all positions (f32 reference, llama.cpp with an f32 KV cache):
#   tiny random Llama:  f32 3.6e-7, f16 3.8e-4, bf16 3.4e-3, q8_0 1.0e-2
#   pretrained stories260K (hidden 64): f32 2.1e-5, f16 2.4e-2, bf16 0.16, q8_0 0.76 (mean KL 2.3e-3)
#   SmolLM2-135M through llama.cpp's convert_hf_to_gguf.py: f32 9.1e-5, f16 9.2e-2 (mean KL 1.2e-5)
#   SmolLM2-135M LoRA fine-tune (examples/intent-json-smollm2, 4 prompts x 24 tokens): f16 0.080 (KL 4.3e-6),
#     q8_0 1.80 (KL 5.0e-3, greedy identical): transformers reading the q8_0 file's own weights is 1.48 from
#     the float model (weight rounding) and 1.59 from llama.cpp on that file (its 8-bit activations in q8_0
#     dot products); the same split for f16 is 0.04 / 0.05, so tensors and metadata are right. The smallest
#     planted bug in that q8_0 file (rope base 100000 -> 500000) moves logits by 8.8: q8_0's bound is 3.0.
#     docs/parity-bounds.md has the table (bench/gguf_error_split.py measures the split).
# Conversion bugs planted in tiny-Llama f32 files move logits by 7e-3 .. 1.4 (rope base, q/k permutation,
# gate/up swap, rms epsilon, shifted ids, swapped layers): the f32 bound catches every one; the coarser
# types' bounds sit above their rounding noise on real models, so the planted-bug tests judge f32 files.
# The near-tie margin is a fixed number per type, never scaled by the error it excuses.
BOUNDS: dict[str, Bounds] = {
    "f32": Bounds(max_logit_diff=1e-3, greedy_tokens=True, near_tie_margin=1e-3),
    "f16": Bounds(max_logit_diff=2.5e-1, greedy_tokens=True, near_tie_margin=1e-2, max_mean_kl=1e-3),
    "bf16": Bounds(max_logit_diff=1.0, greedy_tokens=True, near_tie_margin=5e-2, max_mean_kl=1e-2),
    "q8_0": Bounds(max_logit_diff=3.0, greedy_tokens=True, near_tie_margin=5e-2, max_mean_kl=1e-2),
    "q6_k": _LOW_BIT,
    "q5_k_m": _LOW_BIT,
    "q5_0": _LOW_BIT,
    "q4_k_m": _LOW_BIT,
    "q4_0": _LOW_BIT,
}


@dataclass
class Prompt:
    """A verification prompt: HF's ids, the text llama.cpp tokenizes, and whether HF added special tokens."""

    ids: list[int]
    text: str
    add_special: bool = False


@dataclass
class PromptParity:
    index: int
    text: str  # the prompt as rendered for llama.cpp (chat template and system prompt included)
    tokenization_equal: bool
    hf_ids: list[int]
    gguf_ids: list[int]
    hf_tokens: list[int] = field(default_factory=list)  # HF's greedy continuation
    gguf_top1: list[int] = field(default_factory=list)  # llama.cpp's top-1 at the same positions, same prefix
    first_divergence: int | None = None  # index into hf_tokens of the first disagreement
    divergences: list[dict] = field(default_factory=list)  # every disagreement with HF's top-2 margin there
    max_logit_diff: float = 0.0
    max_logit_diff_position: int = 0  # position in prompt + continuation whose logits differ most
    logit_diff_per_position: list[float] = field(default_factory=list)
    top1_agreement: float = 1.0
    mean_kl: float = 0.0


@dataclass
class FormatParity:
    gguf_type: str  # read from the file, not from what was asked for
    file: str
    verdict: str  # "passed" or "failed"
    bounds: dict
    measured: dict
    failures: list[str]
    prompts: list[PromptParity]
    lora: str | None = None  # a LoRA GGUF llama.cpp applied on top of `file` at load time (adapter export)

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_dict(self) -> dict:
        return asdict(self)


def gguf_type_of(path: Path) -> str:
    """The file's type as tunesmith names it (f16, q4_k_m, ...), from general.file_type."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(str(path))
    file_type = reader.fields.get("general.file_type")
    if file_type is None:
        return _type_from_tensors(reader)
    name = LlamaFileType(int(file_type.contents())).name  # e.g. MOSTLY_Q4_K_M, ALL_F32
    return name.split("_", 1)[1].lower()


def _type_from_tensors(reader) -> str:
    """Files without general.file_type: the most common type among the matrices."""
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        if len(tensor.shape) >= 2:
            counts[tensor.tensor_type.name.lower()] = counts.get(tensor.tensor_type.name.lower(), 0) + 1
    return max(counts, key=counts.get) if counts else "f32"


def bounds_for(gguf_type: str) -> Bounds:
    """Bounds for a type; quantized types tunesmith does not write are judged like the other low-bit ones."""
    return BOUNDS.get(gguf_type, _LOW_BIT)


def check_gguf(
    path: Path,
    model,
    tokenizer,
    prompts: list[Prompt],
    n_tokens: int,
    stop_ids: set[int],
    lora_path: Path | None = None,
) -> FormatParity:
    """Compare one GGUF file (with a LoRA GGUF applied on top, if given) with the HF model (float32, eval mode)
    on every prompt and give the verdict; the bounds are those of the (base) file's type."""
    gguf_type = gguf_type_of(path)
    n_ctx = max(len(p.ids) for p in prompts) + n_tokens + 8
    llm = open_gguf(path, n_ctx, lora_path)
    try:
        results = [compare_prompt(i, llm, model, p, n_tokens, stop_ids) for i, p in enumerate(prompts)]
        bos_failure = _bos_failure(llm, tokenizer)
    finally:
        llm.close()
    bounds = bounds_for(gguf_type)
    measured = _measured(results)
    failures = ([bos_failure] if bos_failure else []) + judge(results, bounds)
    return FormatParity(
        gguf_type=gguf_type,
        file=Path(path).name,
        verdict="failed" if failures else "passed",
        bounds=asdict(bounds),
        measured=measured,
        failures=failures,
        prompts=results,
        lora=Path(lora_path).name if lora_path else None,
    )


def open_gguf(path: Path, n_ctx: int, lora_path: Path | None = None):
    """llama.cpp on one thread with an f32 KV cache, so only the file's weights differ from HF (plus a LoRA
    GGUF applied at load time when `lora_path` is given)."""
    llama_cpp = require_llama_cpp()
    f32 = 0  # GGML_TYPE_F32; llama.cpp's default f16 cache alone moves logits by ~1e-2
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        logits_all=True,
        verbose=False,
        type_k=f32,
        type_v=f32,
        n_threads=1,
        seed=0,
        lora_path=str(lora_path) if lora_path else None,
    )


def hf_greedy(model, ids: list[int], n_tokens: int, stop_ids: set[int]) -> tuple[list[int], np.ndarray]:
    """HF's greedy continuation and its logits at every position of prompt + continuation (last one excluded)."""
    import torch

    tokens: list[int] = []
    with torch.no_grad():
        for _ in range(n_tokens):
            logits = model(input_ids=torch.tensor([ids + tokens]), use_cache=False).logits[0].float().numpy()
            tokens.append(int(logits[-1].argmax()))
            if tokens[-1] in stop_ids:
                break
    return tokens, logits  # the last forward saw ids + tokens[:-1]: one row per position


def gguf_logits(llm, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position of `ids`, read in one pass."""
    llm.reset()
    llm.eval(ids)
    return np.asarray(llm.scores[: llm.n_tokens], dtype=np.float32)


def compare_prompt(index: int, llm, model, prompt: Prompt, n_tokens: int, stop_ids: set[int]) -> PromptParity:
    gguf_ids = list(llm.tokenize(prompt.text.encode("utf-8"), add_bos=prompt.add_special, special=True))
    hf_tokens, hf = hf_greedy(model, prompt.ids, n_tokens, stop_ids)
    gg = gguf_logits(llm, prompt.ids + hf_tokens[:-1])
    result = PromptParity(
        index=index, text=prompt.text, tokenization_equal=gguf_ids == prompt.ids, hf_ids=prompt.ids, gguf_ids=gguf_ids
    )
    if hf.shape != gg.shape:  # a different vocabulary size: nothing else is comparable
        result.max_logit_diff, result.top1_agreement, result.mean_kl = float("inf"), 0.0, float("inf")
        return result
    start = len(prompt.ids) - 1  # the position that predicts the first generated token
    diff = np.abs(hf - gg)
    result.hf_tokens, result.gguf_top1 = hf_tokens, [int(t) for t in gg[start:].argmax(-1)]
    result.max_logit_diff = float(diff.max())
    result.max_logit_diff_position = int(diff.max(-1).argmax())
    result.logit_diff_per_position = [round(float(d), 6) for d in diff.max(-1)]
    result.top1_agreement = float((hf.argmax(-1) == gg.argmax(-1)).mean())
    result.mean_kl = float(_kl(hf, gg).mean())
    for step, (want, got) in enumerate(zip(hf_tokens, result.gguf_top1)):
        if want != got:
            top2 = np.sort(hf[start + step])[-2:]
            result.divergences.append({"token": step, "hf": want, "gguf": got, "hf_margin": float(top2[1] - top2[0])})
    result.first_divergence = result.divergences[0]["token"] if result.divergences else None
    return result


def _kl(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(P || Q) per position, from logits, in float64."""
    p_log = _log_softmax(p_logits.astype(np.float64))
    q_log = _log_softmax(q_logits.astype(np.float64))
    return (np.exp(p_log) * (p_log - q_log)).sum(-1)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _bos_failure(llm, tokenizer) -> str | None:
    """llama.cpp must add the same leading special tokens as HF (BOS or none, same id): Ollama feeds what it adds."""
    text = "Hello"
    hf_added = _leading_added(
        tokenizer(text, add_special_tokens=True)["input_ids"], tokenizer(text, add_special_tokens=False)["input_ids"]
    )
    gguf_added = _leading_added(
        llm.tokenize(text.encode("utf-8"), add_bos=True, special=False),
        llm.tokenize(text.encode("utf-8"), add_bos=False, special=False),
    )
    if hf_added == gguf_added:
        return None
    return (
        f"special tokens: HF puts {hf_added or 'nothing'} before a text, llama.cpp puts {gguf_added or 'nothing'} "
        f"(GGUF BOS id {llm.token_bos()}, HF BOS id {tokenizer.bos_token_id})"
    )


def _leading_added(with_special, without) -> list[int]:
    """The ids a tokenizer adds in front of a text when asked to add special tokens."""
    with_special, without = list(with_special), list(without)
    cut = len(with_special) - len(without)
    return with_special[:cut] if cut >= 0 and with_special[cut:] == without else with_special


def _measured(results: list[PromptParity]) -> dict:
    worst = max(results, key=lambda r: r.max_logit_diff)
    return {
        "prompts": len(results),
        "tokenization_match_rate": sum(r.tokenization_equal for r in results) / len(results),
        "greedy_match_rate": sum(not r.divergences for r in results) / len(results),
        "max_logit_diff": worst.max_logit_diff,
        "max_logit_diff_at": {"prompt": worst.index, "position": worst.max_logit_diff_position},
        "top1_agreement": float(np.mean([r.top1_agreement for r in results])),
        "mean_kl": float(np.mean([r.mean_kl for r in results])),
    }


def judge(results: list[PromptParity], bounds: Bounds) -> list[str]:
    """Every way the measurements break the bounds, first divergence first; empty when the GGUF passes."""
    failures = [
        f"tokenization: prompt {r.index}: HF ids {r.hf_ids[:12]}... but llama.cpp {r.gguf_ids[:12]}... "
        f"(first difference at id {_first_difference(r.hf_ids, r.gguf_ids)})"
        for r in results
        if not r.tokenization_equal
    ]
    if bounds.greedy_tokens:
        failures += _greedy_failures(results, bounds.near_tie_margin)
    if bounds.max_logit_diff is not None:
        failures += _logit_failures(results, bounds.max_logit_diff)
    agreement = float(np.mean([r.top1_agreement for r in results]))
    if bounds.min_top1_agreement is not None and not agreement >= bounds.min_top1_agreement:
        failures.append(f"top-1 agreement {agreement:.1%} is under the bound {bounds.min_top1_agreement:.0%}")
    kl = float(np.mean([r.mean_kl for r in results]))
    if bounds.max_mean_kl is not None and not kl <= bounds.max_mean_kl:
        failures.append(f"mean KL(HF || GGUF) {kl:.3g} is over the bound {bounds.max_mean_kl:g}")
    return failures


def _greedy_failures(results: list[PromptParity], margin: float) -> list[str]:
    out = []
    for r in results:
        real = [d for d in r.divergences if not d["hf_margin"] < margin]
        if real:
            d = real[0]
            out.append(
                f"greedy tokens: prompt {r.index}: first divergence at generated token {d['token']} (HF {d['hf']}, "
                f"GGUF {d['gguf']}; HF top-2 margin {d['hf_margin']:.3g} is not a near tie < {margin:g}); "
                f"logit difference up to {r.max_logit_diff:.3g} on this prompt"
            )
    return out


def _logit_failures(results: list[PromptParity], bound: float) -> list[str]:
    worst = max(results, key=lambda r: r.max_logit_diff)
    if worst.max_logit_diff < bound:
        return []
    first = next(r for r in results if not r.max_logit_diff < bound)
    position = next((i for i, d in enumerate(first.logit_diff_per_position) if not d < bound), 0)
    return [
        f"logits: max |HF - GGUF| logit difference {worst.max_logit_diff:.3g} (prompt {worst.index}, position "
        f"{worst.max_logit_diff_position}) is over the bound {bound:g}; first over it: prompt {first.index}, "
        f"position {position} of {len(first.logit_diff_per_position)}"
    ]


def _first_difference(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
