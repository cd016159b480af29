"""Curriculum masking never touches a ground-truth frame: many random videos, windows, fractions and both orders;
the count is exactly int(fraction * n_outside) and ``farthest`` never keeps an outside frame farther than one it
masks. Plus the tally of a step and the seeded ``random`` order."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from timegrpo.curriculum import masking as api
from timegrpo.data.masking import (
    MASK_ORDERS,
    CurriculumMasking,
    distance_to_windows,
    frames_to_mask,
    inside_windows,
)


def random_case(rng: random.Random) -> tuple[list[float], list[tuple[float, float]], float]:
    duration = rng.uniform(2, 120)
    fps = rng.choice([0.5, 1.0, 2.0, 3.0])
    times = [i / fps for i in range(int(duration * fps))] or [0.0]
    windows = []
    for _ in range(rng.randint(1, 3)):
        s = rng.uniform(0, duration)
        e = min(duration, s + rng.choice([0.0, rng.uniform(0, duration / 2)]))
        windows.append((s, e))
    if rng.random() < 0.2:  # boundaries exactly on a frame
        t = rng.choice(times)
        windows.append((t, t + rng.choice([0.0, 1 / fps])))
    return times, windows, rng.choice([0.0, 1.0, rng.random()])


@pytest.mark.parametrize("order", MASK_ORDERS.names())
def test_no_ground_truth_frame_is_ever_masked(order):
    rng = random.Random(f"masking-{order}")
    for case in range(3000):
        times, windows, fraction = random_case(rng)
        mask = frames_to_mask(times, windows, fraction, order=order, seed=case)
        inside = [inside_windows(t, windows) for t in times]
        assert not any(m and i for m, i in zip(mask, inside, strict=True)), (times, windows, fraction)
        assert sum(mask) == int(fraction * inside.count(False))
        if order == "farthest" and any(mask):
            masked = min(distance_to_windows(t, windows) for t, m in zip(times, mask, strict=True) if m)
            kept = [distance_to_windows(t, windows) for t, m, i in zip(times, mask, inside, strict=True)
                    if not m and not i]
            assert all(d <= masked for d in kept)


def test_the_api_names_are_the_data_stages():
    assert api.frames_to_mask is frames_to_mask and api.CurriculumMasking is CurriculumMasking
    assert api.ORDERS == ("farthest", "random")


def test_random_order_is_seeded():
    times = [i / 2 for i in range(40)]
    a, b = (frames_to_mask(times, [(5.0, 8.0)], 0.5, "random", seed=s) for s in (1, 1))
    c = frames_to_mask(times, [(5.0, 8.0)], 0.5, "random", seed=2)
    assert a == b != c and sum(a) == int(0.5 * 33)


def meta(n: int) -> SimpleNamespace:
    return SimpleNamespace(frames_indices=[2 * i for i in range(n)], fps=4.0)  # frames at 0, .5, 1, ... s


def test_a_sample_loaded_twice_in_a_step_counts_once_and_buckets_choose():
    sample = SimpleNamespace(qid="q", windows=[(0.0, 0.5)], meta={"difficulty_bucket": "medium"})
    easy = SimpleNamespace(qid="e", windows=[(0.0, 0.5)], meta={"difficulty_bucket": "easy"})
    masking = CurriculumMasking(max_fraction=0.5, until=1.0, buckets=["medium", "hard"])
    frames = torch.ones(10, 3, 2, 2)
    for _ in range(2):  # dynamic sampling loads a kept sample again: same frames, one count
        out = masking(sample, frames, meta(10), 0, 4)
    masking(easy, frames, meta(10), 0, 4)
    # 8 frames outside [0, 0.5]; int(0.5 * 8) = 4 masked (the last four: farthest)
    assert [float(f.sum()) == 0 for f in out] == [False] * 6 + [True] * 4
    assert masking.pop_stats(0) == {"masking/fraction": 0.5, "masking/masked_share": 4 / 20,
                                    "masking/bucket_share": 0.5}
    # over processes the counts are summed before the shares are taken
    masking(sample, frames, meta(10), 1, 4)  # m(1 of 4) = 0.5 * (1 - 1/4) = 0.375 -> int(3.0) = 3
    doubled = masking.pop_stats(1, lambda c: {k: 2 * v + (10 if k == "frames" else 0) for k, v in c.items()})
    assert doubled["masking/masked_share"] == 6 / 30 and doubled["masking/fraction"] == 0.375
