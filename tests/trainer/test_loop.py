"""The loop's data order: which samples each process takes, for every P x S x W layout."""

from __future__ import annotations

import itertools

import pytest

from timegrpo.data.order import epoch_permutation
from timegrpo.trainer.loop import DataOrder


def layout(n, p, s, w, r, aligned):
    return DataOrder(n=n, seed=3, per_device=p, accumulation=s, world=w, rank=r, epoch_aligned=aligned)


@pytest.mark.parametrize(("p", "w"), list(itertools.product((1, 2, 3), (1, 2, 4))))
def test_w_processes_see_what_one_process_sees_with_w_times_the_accumulation(p, w):
    """GRPO's order: the prompts of a step, process by process in rank order, are those of one process that
    accumulates W times as many micro-batches, whatever the epoch boundaries (n = 11)."""
    for step in range(7):
        one = layout(11, p, 2 * w, 1, 0, False).step_positions(step)
        ranks = [layout(11, p, 2, w, r, False).step_positions(step) for r in range(w)]
        assert [ranks[r][k] for k in range(2) for r in range(w)] == one
        assert all(len(mb) == p for mb in one)


@pytest.mark.parametrize(("n", "p", "w"), [(11, 3, 1), (11, 3, 2), (11, 2, 4), (9, 1, 4), (8, 3, 1)])
def test_epoch_aligned_order_covers_each_epoch_once_and_never_leaves_a_process_empty(n, p, w):
    """SFT's order: an epoch is the permutation of (seed, epoch) cut into micro-batches of P x W, the last short;
    no process ever gets an empty micro-batch (a last micro-batch smaller than W is topped up)."""
    per_epoch = -(-n // (p * w))
    for epoch in range(3):
        seen = []
        for m in range(epoch * per_epoch, (epoch + 1) * per_epoch):
            parts = [layout(n, p, 1, w, r, True).step_positions(m)[0] for r in range(w)]
            assert all(parts), parts
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
            seen += [parts[j % w][j // w] for j in range(sum(map(len, parts)))]  # rank r took chunk[r::w]
        assert sorted(set(seen)) == list(range(n))
        assert seen[:n] == epoch_permutation(3, epoch, n)
