"""The data order of every training loop (GRPO, SFT, GIRL-DETR): one seeded permutation per epoch.

A run's order depends only on ``(seed, epoch)``, never on the process layout or on where a run was resumed.
"""

from __future__ import annotations

import torch


def epoch_permutation(seed: int, epoch: int, n: int, *, seed_stride: int = 7919) -> list[int]:
    """The order of ``n`` samples in ``epoch``: ``torch.randperm`` seeded by ``seed * seed_stride + epoch``.

    GRPO and SFT use the default stride; GIRL-DETR keeps the stride its published numbers were made with
    (100_003: the order torch's shuffling DataLoader gave with that seed, so its runs are unchanged).

    >>> epoch_permutation(0, 1, 5) == epoch_permutation(0, 1, 5) != epoch_permutation(0, 2, 5)
    True
    >>> sorted(epoch_permutation(3, 0, 4))
    [0, 1, 2, 3]
    """
    generator = torch.Generator().manual_seed(seed * seed_stride + epoch)
    return torch.randperm(n, generator=generator).tolist()
