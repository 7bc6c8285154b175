"""The padded path's sampler: transformers' length grouping, seeded by data_seed + epoch.

transformers' LengthGroupedSampler draws its order from the global RNG, whose state at that point depends on
everything that ran before (model init, adapter init): the same data and seed give other batches when the
LoRA rank changes, and `tunesmith plan` cannot know which batches a run will time. Seeded per epoch (the
Trainer calls `set_epoch` at every epoch, resumed ones included), the order depends on the data and the seed
only, like accelerate's seedable sampler on the padding-free path.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Mega-batches grouped by length (longest first), a fresh generator seeded with seed + epoch per epoch."""

    def __init__(self, batch_size: int, dataset, seed: int):
        super().__init__(batch_size, dataset=dataset)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
