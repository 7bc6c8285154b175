"""A faster drop-in for torch.nn.Dropout in LoRA layers (CPU)."""

from __future__ import annotations

import torch


class FastDropout(torch.nn.Module):
    """Inverted dropout whose mask comes from rand_like: the same distribution as torch.nn.Dropout.

    On CPU, Dropout's bernoulli_ took ~18% of a LoRA step (bench/sft_throughput.py, torch 2.13); rand_like
    plus a compare is about twice as fast.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
