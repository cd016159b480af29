"""The data order of every training loop (GRPO, SFT, GIRL-DETR): one seeded permutation per epoch.

A run's order depends only on ``(seed, epoch)``, never on the process layout or on where a run was resumed.
"""

from __future__ import annotations

import torch


def epoch_permutation(seed: int, epoch: int, n: int) -> list[int]:
    """The order of ``n`` samples in ``epoch``: ``torch.randperm`` seeded by ``seed * 7919 + epoch``.

    >>> epoch_permutation(0, 1, 5) == epoch_permutation(0, 1, 5) != epoch_permutation(0, 2, 5)
    True
    >>> sorted(epoch_permutation(3, 0, 4))
    [0, 1, 2, 3]
    """
    generator = torch.Generator().manual_seed(seed * 7919 + epoch)
    return torch.randperm(n, generator=generator).tolist()
