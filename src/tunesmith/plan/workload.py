"""What one run pushes through the model: token lengths of the training split and the batches it will form.

The lengths are counted like `data stats` counts them (the chat template rendered, the fast tokenizer in
batches) on the training split the run would use, then cut at `data.max_length`. The share of trained
tokens comes from tokenizing a sample with the real loss mask. The micro-batches are drawn as the trainer
draws them (accelerate's seedable sampler: one `torch.randperm` per epoch seeded with data_seed + epoch, the
same batches the run sees; padded batches are grouped by length, longest first), so the peak batch is the
largest one this run will really see, not a worst case it never meets, and the time is the mean over the
batches the run will time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MASK_SAMPLE = 300  # examples tokenized with the loss mask to measure the trained share


@dataclass
class Workload:
    examples: int  # training examples (prompts for GRPO)
    steps: int  # optimizer steps
    micro_batches: int  # forward/backward passes (steps x grad_accum)
    batch_size: int  # sequences per micro-batch
    mean_length: float  # tokens per example after truncation
    max_length_seen: int  # the longest (truncated) example
    trained_share: float  # share of tokens whose next token is trained
    tokens_per_step: float  # real (non-pad) tokens per optimizer step, mean
    computed_tokens_per_step: float  # tokens the model computes per step (padding included)
    peak_batch_tokens: int  # positions of the largest micro-batch (padding included)
    peak_batch_trained: int  # trained positions in that micro-batch (logits are computed for these)
    peak_longest: int  # longest sequence in that micro-batch (attention works per sequence)
    completion_length: int = 0  # GRPO: tokens generated per completion
    generations: int = 0  # GRPO: completions per prompt
    # the micro-batch whose computed positions are closest to the run's mean: what the time probe runs
    typical_lengths: list[int] = field(default_factory=list)  # its sequence lengths (before padding)
    typical_trained: int = 0  # its positions that get logits
    # means over the micro-batches the run's seconds per step cover (all but the first step's): the time
    # probe's typical micro-batch is moved to these (plan/speed.py batch_scales)
    timed_tokens: float = 0.0  # computed positions
    timed_examples: float = 0.0  # sequences (per-example attention pays a call each)
    timed_square: float = 0.0  # sum of squared sequence lengths (attention work)
    timed_trained: float = 0.0  # positions that get logits
    timed_longest: int = 0  # the longest sequence among them

    @property
    def truncated_note(self) -> str:
        return f"examples cut at {self.max_length_seen} tokens" if self.max_length_seen else ""


def run_steps(config, examples: int) -> int:
    """Optimizer steps of the run: max_steps, else epochs over the examples (as the Trainer counts them).
    A --smoke run is planned from its smoke config (config/smoke.py), like any other."""
    t = config.train
    if t.max_steps:
        return t.max_steps
    per_epoch = max(1, math.ceil(examples / t.batch_size) // t.grad_accum)
    return max(1, math.ceil(per_epoch * t.epochs))


def sft_workload(
    lengths: list[int], trained: list[float], config, batching: str, rejected: list[int] | None = None
) -> Workload:
    """Batches of an SFT run over examples of these (truncated) lengths and trained shares; with `rejected`
    (paired preference methods) each example is two sequences, prompt + chosen and prompt + rejected."""
    t = config.train
    steps = run_steps(config, len(lengths))
    micro = steps * t.grad_accum
    share = sum(trained) / max(1, len(trained))
    batches = draw_batches(
        len(lengths),
        t.batch_size,
        micro,
        config.run.seed,
        lengths if batching == "padded" and config.method == "sft" else None,  # only SFT groups by length
        group_size=t.batch_size * t.grad_accum,
    )

    def sequences(k: int) -> list[int]:
        return [n for i in batches[k] for n in ([lengths[i], rejected[i]] if rejected else [lengths[i]])]

    seqs = [sequences(k) for k in range(len(batches))]
    rows = [attention_rows(s, batching) for s in seqs]
    real = [sum(s) for s in seqs]
    computed = [sum(r) for r in rows]
    peak = max(range(len(batches)), key=lambda k: computed[k])
    # the typical step leaves out the first: padded batching puts the longest batch there on purpose (to fail
    # early), which a short run's mean would follow; training's measured seconds per step leave it out too
    rest = range(t.grad_accum, len(batches)) if len(batches) > t.grad_accum else range(len(batches))
    mean = sum(computed[k] for k in rest) / len(rest)
    typical = min(rest, key=lambda k: abs(computed[k] - mean))

    def logit_positions(k: int) -> int:
        # the padded path computes logits for every position; the padding-free path only at trained ones
        if batching == "padded":
            return computed[k]
        pair = (lambda i: lengths[i] + rejected[i]) if rejected else (lambda i: lengths[i])
        return round(sum(pair(i) * trained_at(trained, i) for i in batches[k]))

    return Workload(
        examples=len(lengths),
        steps=steps,
        micro_batches=micro,
        batch_size=t.batch_size,
        mean_length=sum(lengths) / max(1, len(lengths)),
        max_length_seen=max(lengths + (rejected or []), default=0),
        trained_share=share,
        tokens_per_step=sum(real) / len(batches) * t.grad_accum,
        computed_tokens_per_step=sum(computed) / len(batches) * t.grad_accum,
        peak_batch_tokens=computed[peak],
        peak_batch_trained=logit_positions(peak),
        peak_longest=max(seqs[peak]),
        typical_lengths=seqs[typical],
        typical_trained=logit_positions(typical),
        timed_tokens=mean,
        timed_examples=sum(len(rows[k]) for k in rest) / len(rest),
        timed_square=sum(sum(n * n for n in rows[k]) for k in rest) / len(rest),
        timed_trained=sum(logit_positions(k) for k in rest) / len(rest),
        timed_longest=max(max(rows[k]) for k in rest),
    )


def attention_rows(lengths: list[int], batching: str) -> list[int]:
    """The sequence lengths attention works on in a micro-batch of these lengths: each sequence
    (padding-free), or every row at the longest (padded)."""
    return [max(lengths)] * len(lengths) if batching == "padded" and lengths else list(lengths)


def trained_at(trained: list[float], i: int) -> float:
    """The trained share of example i (measured for a sample; the sample's mean for the rest)."""
    return trained[i] if i < len(trained) else sum(trained) / max(1, len(trained))


def draw_batches(
    n: int, batch_size: int, count: int, seed: int, group_lengths: list[int] | None = None, group_size: int = 0
) -> list[list[int]]:
    """`count` micro-batches of example indices, one seeded shuffle per epoch (the last short batch kept).

    Without `group_lengths` the order is accelerate's SeedableRandomSampler's, which the Trainer's random
    sampler becomes: `torch.randperm(n)` from a generator seeded with data_seed + epoch. With `group_lengths`
    (padded batching), each epoch's order comes from transformers' own `get_length_grouped_indices` seeded with
    seed + epoch, as the run's sampler calls it for `group_size` (batch size x grad_accum; train/sampling.py):
    mega-batches of up to 50 groups, each sorted longest first, the longest example of all at the front.
    """
    import torch

    grouped = _length_grouped_orders(group_lengths, group_size or batch_size, seed) if group_lengths else None
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < count:
        if grouped is not None:
            order = next(grouped)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        epoch += 1
        batches += [order[k : k + batch_size] for k in range(0, n, batch_size)]
    return batches[:count]


def _length_grouped_orders(lengths: list[int], group_size: int, seed: int):
    """One length-grouped order per epoch, drawn as the run's sampler draws them (train/sampling.py: transformers'
    grouping with a generator seeded by seed + epoch)."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    epoch = 0
    while True:
        yield get_length_grouped_indices(lengths, group_size, generator=torch.Generator().manual_seed(seed + epoch))
        epoch += 1


def grpo_workload(prompt_lengths: list[int], config) -> Workload:
    """GRPO: every step generates batch_size x grad_accum completions (groups of num_generations) of up to
    max_completion_length tokens for the prompts TRL's RepeatSampler draws for it, left-padded to the longest of
    them, then trains on prompt + completion (padded) with logits over the completion."""
    t, g = config.train, config.grpo
    batch, accum = t.batch_size, t.grad_accum
    prompts_per_step = max(1, batch * accum // g.num_generations)
    steps = t.max_steps or max(1, math.ceil(len(prompt_lengths) / prompts_per_step * t.epochs))
    chunks = prompt_chunks(len(prompt_lengths), prompts_per_step, steps, config.run.seed)
    longest = [max(prompt_lengths[i] for i in c) for c in chunks] or [max(prompt_lengths, default=0)]
    rest = longest[1:] or longest  # the first step is not timed
    mean = sum(rest) / len(rest)
    typical = min(rest, key=lambda n: abs(n - mean))
    mean_prompt = sum(prompt_lengths) / max(1, len(prompt_lengths))
    completion = g.max_completion_length  # an untrained model rarely stops early: plan for full length
    peak = max(longest) + completion
    return Workload(
        examples=len(prompt_lengths),
        steps=steps,
        micro_batches=steps * accum,
        batch_size=batch,
        mean_length=mean_prompt + completion,
        max_length_seen=max(prompt_lengths, default=0) + completion,
        trained_share=completion / (mean_prompt + completion),
        tokens_per_step=batch * accum * (mean_prompt + completion),
        computed_tokens_per_step=batch * accum * (sum(longest) / len(longest) + completion),
        peak_batch_tokens=batch * peak,
        peak_batch_trained=batch * (completion + 1),
        peak_longest=peak,
        completion_length=completion,
        generations=batch * accum,
        typical_lengths=[typical + completion] * batch,
        typical_trained=batch * (completion + 1),
        timed_tokens=batch * (mean + completion),
        timed_examples=batch,
        timed_square=sum(batch * (n + completion) ** 2 for n in rest) / len(rest),
        timed_trained=batch * (completion + 1),
        timed_longest=max(rest) + completion,
    )


def prompt_chunks(n: int, per_step: int, count: int, seed: int) -> list[list[int]]:
    """The prompts of each step as TRL's RepeatSampler draws them: one generator seeded with the run's seed, a
    `torch.randperm` per pass over the prompts, chunks of the prompts one generation needs (short ones dropped)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    chunks: list[list[int]] = []
    while len(chunks) < count and n >= per_step:
        order = torch.randperm(n, generator=generator).tolist()
        chunks += [order[k : k + per_step] for k in range(0, n - per_step + 1, per_step)]
    return chunks[:count]
