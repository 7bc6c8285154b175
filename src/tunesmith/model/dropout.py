"""A faster drop-in for torch.nn.Dropout in LoRA layers (CPU).

On CPU, nn.Dropout's mask (one bernoulli_ draw per element) took ~18% of a LoRA step in
bench/sft_throughput.py (torch 2.13). For the small rates LoRA uses, drawing the *gaps* between dropped
elements instead is exact and far cheaper: i.i.d. Bernoulli(p) drops are the same process as i.i.d.
Geometric(p) gaps, and there are only about p * n of them to draw. The dropped positions are then zeroed in
the scaled copy (forward) and in the scaled gradient (backward): one pass over the tensor each way, and only
the p * n positions kept for backward instead of a full mask.
"""

from __future__ import annotations

import torch

GAPS_UP_TO = 0.2  # above this rate a draw per element is cheaper than the gaps


class FastDropout(torch.nn.Module):
    """Inverted dropout with the same distribution as torch.nn.Dropout and a cheaper mask."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p > GAPS_UP_TO:
            return x * (torch.rand_like(x) >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p))
        return _ZeroAt.apply(x, drop_positions(x.numel(), self.p, x.device), 1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _ZeroAt(torch.autograd.Function):
    """x * scale with the flat positions `drops` set to zero; the gradient is masked the same way."""

    @staticmethod
    def forward(ctx, x, drops, scale):
        ctx.save_for_backward(drops)
        ctx.scale = scale
        return _scaled_zeroed(x, drops, scale)

    @staticmethod
    def backward(ctx, grad):
        (drops,) = ctx.saved_tensors
        return _scaled_zeroed(grad, drops, ctx.scale), None, None


def _scaled_zeroed(x: torch.Tensor, drops: torch.Tensor, scale: float) -> torch.Tensor:
    out = x.mul(scale).contiguous()
    out.view(-1).index_fill_(0, drops, 0.0)
    return out


def drop_positions(n: int, p: float, device=None) -> torch.Tensor:
    """Sorted flat positions in [0, n), each present with probability p independently (from Geometric gaps)."""
    expected = n * p
    batch = int(expected + 6 * (expected * (1 - p)) ** 0.5) + 16  # almost always enough in one draw
    f64 = torch.float64  # positions are exact integers in float64 up to 2**53 (float32 only to 2**24 = 16.7M)
    drops = torch.empty(batch, dtype=f64, device=device).geometric_(p).cumsum_(0).sub_(1)
    while drops[-1] < n:  # rare: extend the gaps past the end
        more = torch.empty(batch, dtype=f64, device=device).geometric_(p).cumsum_(0).add_(drops[-1])
        drops = torch.cat([drops, more])
    return drops[drops < n].long()
