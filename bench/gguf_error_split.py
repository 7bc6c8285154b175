"""Where a GGUF's logit difference from its HF model comes from: weight rounding or llama.cpp itself.

Not a test. For each GGUF of a finished run (or any GGUF with a run to judge it against) it compares, on the
run's verification prompts teacher-forced with the HF model's greedy continuation:
  total     HF float model        vs llama.cpp on the GGUF  (what `tunesmith verify` judges)
  rounding  HF float model        vs HF on the GGUF's weights, dequantized by transformers' GGUF loader
  llama.cpp HF on the GGUF weights vs llama.cpp on the GGUF  (kernels, activation quantization, conversion)
When `llama.cpp` is small and `rounding` is close to `total`, the file holds the right weights in the right
places and the difference is the type's rounding: no conversion bug. A conversion bug (wrong permutation,
swapped tensors, wrong metadata) shows up in `llama.cpp`, since transformers reads the file independently.

    python bench/gguf_error_split.py RUN_DIR FILE.gguf [FILE.gguf ...] [--prompts 8] [--tokens 24]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TUNESMITH_NO_PROGRESS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def hf_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float().numpy()


def compare(a: np.ndarray, b: np.ndarray, start: int) -> dict:
    """Max |a - b| over all positions and tokens, mean KL(a || b), and top-1 agreement on generated positions."""
    from tunesmith.export.parity import _kl

    return {
        "max": float(np.abs(a - b).max()),
        "kl": float(_kl(a, b).mean()),
        "top1": float((a[start:].argmax(-1) == b[start:].argmax(-1)).mean()),
    }


def margins_at_flips(ref: np.ndarray, other: np.ndarray, start: int) -> list[float]:
    """ref's top-2 margin at each generated position where `other` picks another top-1 token."""
    out = []
    for row_ref, row_other in zip(ref[start:], other[start:]):
        if row_ref.argmax() != row_other.argmax():
            top2 = np.sort(row_ref)[-2:]
            out.append(round(float(top2[1] - top2[0]), 3))
    return out


def split_one(gguf: Path, model, prompts, tokens: int, stops: set[int]) -> dict:
    from tunesmith.export.parity import gguf_logits, hf_greedy, open_gguf
    from tunesmith.model.load import load_model

    dequantized = load_model(str(gguf), dtype=torch.float32).eval()
    llm = open_gguf(gguf, max(len(p.ids) for p in prompts) + tokens + 8)
    rows = {"total": [], "rounding": [], "llama.cpp": []}
    flips = {"total": [], "rounding": []}
    try:
        for prompt in prompts:
            continuation, _ = hf_greedy(model, prompt.ids, tokens, stops)
            ids = prompt.ids + continuation[:-1]
            start = len(prompt.ids) - 1
            hf, deq, cpp = hf_logits(model, ids), hf_logits(dequantized, ids), gguf_logits(llm, ids)
            rows["total"].append(compare(hf, cpp, start))
            rows["rounding"].append(compare(hf, deq, start))
            rows["llama.cpp"].append(compare(deq, cpp, start))
            flips["total"] += margins_at_flips(hf, cpp, start)
            flips["rounding"] += margins_at_flips(hf, deq, start)
    finally:
        llm.close()
    summary = {
        name: {
            "max_logit_diff": max(r["max"] for r in values),
            "mean_kl": float(np.mean([r["kl"] for r in values])),
            "top1_agreement": float(np.mean([r["top1"] for r in values])),
        }
        for name, values in rows.items()
    }
    summary["hf_margin_where_top1_flips"] = flips
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("gguf", nargs="+")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=24)
    args = parser.parse_args()

    from tunesmith.export.parity import gguf_type_of
    from tunesmith.export.verify import reference, stop_ids

    model, tokenizer, prompts, tokens = reference(args.run_dir, args.prompts, args.tokens)
    model = model.float().eval()
    print(f"{len(prompts)} prompts x up to {tokens} greedy tokens, teacher-forced; logits over the whole vocabulary")
    print("| file | type | part | max logit diff | mean KL | top-1 agreement |")
    print("|---|---|---|---|---|---|")
    flips = {}
    for path in map(Path, args.gguf):
        result = split_one(path, model, prompts, tokens, stop_ids(tokenizer))
        flips[path.name] = result.pop("hf_margin_where_top1_flips")
        for part, m in result.items():
            print(
                f"| {path.name} | {gguf_type_of(path)} | {part} | {m['max_logit_diff']:.3f} | {m['mean_kl']:.2e} "
                f"| {m['top1_agreement']:.1%} |",
                flush=True,
            )
    for name, margins in flips.items():
        print(f"{name}: HF top-2 margins where the top-1 token flips: {margins}")


if __name__ == "__main__":
    main()
