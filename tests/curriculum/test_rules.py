"""The pure curriculum rules against numbers worked out by hand: masking schedule and frame choice (never a
ground-truth frame, over many random windows), DEA buckets, the partial-annotation rule, and the selectors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from timegrpo.curriculum.difficulty import difficulty, difficulty_bucket
from timegrpo.curriculum.masking import black_out, frames_to_mask, inside_windows, mask_schedule
from timegrpo.curriculum.reflection import is_partially_annotated, outside_length
from timegrpo.curriculum.select import SELECTORS, stratified_quotas, timerft_weight


# ----------------------------------------------------------------------------------------------- masking
def test_mask_schedule_by_hand():
    # K = 40: zero from step 0.5 * 40 = 20 on; step 5 -> 0.8 * (1 - 5/20) = 0.6
    assert mask_schedule(0, 40) == pytest.approx(0.8)
    assert mask_schedule(5, 40) == pytest.approx(0.6)
    assert mask_schedule(15, 40) == pytest.approx(0.2)
    assert mask_schedule(20, 40) == 0.0 and mask_schedule(39, 40) == 0.0
    assert mask_schedule(3, 10, max_fraction=0.5, until=1.0) == pytest.approx(0.35)
    with pytest.raises(ValueError):
        mask_schedule(0, 0)


def test_frames_to_mask_by_hand():
    times = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    # GT [1.0, 2.0]: frames 2, 3, 4 inside (closed window); 7 outside: 0, 1, 5, 6, 7, 8, 9
    # distances: f0 1.0, f1 0.5, f5 0.5, f6 1.0, f7 1.5, f8 2.0, f9 2.5; 0.6 * 7 = 4.2 -> 4 frames: 9, 8, 7, then
    # f0 and f6 tie at 1.0 -> the earlier, f0
    mask = frames_to_mask(times, [(1.0, 2.0)], 0.6)
    assert [i for i, m in enumerate(mask) if m] == [0, 7, 8, 9]
    assert frames_to_mask(times, [(1.0, 2.0)], 0.0) == [False] * 10
    assert sum(frames_to_mask(times, [(1.0, 2.0)], 1.0)) == 7
    # two windows: [0, 0.5] and [4.0, 4.5] leave frames 2..7 outside (1.0..3.5)
    mask = frames_to_mask(times, [(0.0, 0.5), (4.0, 4.5)], 0.5)
    # distances f2 .5, f3 1, f4 1.5, f5 1.5, f6 1, f7 .5; int(0.5 * 6) = 3: f4, f5, then f3 (tie with f6: earlier)
    assert [i for i, m in enumerate(mask) if m] == [3, 4, 5]


def test_frames_to_mask_never_touches_ground_truth_over_random_windows():
    rng = random.Random(0)
    for trial in range(2000):
        duration = rng.uniform(2, 120)
        fps = rng.choice([0.5, 1.0, 2.0, 3.0])
        times = [i / fps for i in range(int(duration * fps))]
        windows = []
        for _ in range(rng.choice([1, 1, 2])):
            s = rng.uniform(0, duration)
            windows.append((s, min(duration, s + rng.uniform(0, duration / 2))))
        if rng.random() < 0.2:  # a window ending exactly on a frame timestamp
            t = rng.choice(times) if times else 0.0
            windows[0] = (windows[0][0] if windows[0][0] <= t else t, t)
        fraction, order = rng.random(), rng.choice(["farthest", "random"])
        mask = frames_to_mask(times, windows, fraction, order=order, seed=trial)
        inside = [any(s <= t <= e for s, e in windows) for t in times]
        assert not any(m and g for m, g in zip(mask, inside)), (times, windows, fraction)
        assert sum(mask) == int(fraction * inside.count(False))
        if order == "farthest" and 0 < sum(mask) < inside.count(False):
            dist = [min(max(s - t, t - e, 0.0) for s, e in windows) for t in times]
            masked = [d for d, m in zip(dist, mask) if m]
            kept = [d for d, m, g in zip(dist, mask, inside) if not m and not g]
            assert min(masked) >= max(kept)


def test_random_order_is_seeded():
    times = [float(t) for t in range(40)]
    a = frames_to_mask(times, [(10.0, 12.0)], 0.5, order="random", seed=3)
    assert a == frames_to_mask(times, [(10.0, 12.0)], 0.5, order="random", seed=3)
    assert a != frames_to_mask(times, [(10.0, 12.0)], 0.5, order="random", seed=4)
    assert not any(a[10:13]) and sum(a) == 18  # int(0.5 * 37)


def test_black_out_keeps_shape_and_other_frames():
    frames = torch.rand(4, 3, 2, 2) * 255
    out = black_out(frames, [True, False, False, True])
    assert out.shape == frames.shape and torch.equal(out[1:3], frames[1:3])
    assert out[0].abs().sum() == 0 and out[3].abs().sum() == 0
    assert inside_windows(2.0, [(2.0, 3.0)]) and not inside_windows(1.999, [(2.0, 3.0)])


# ----------------------------------------------------------------------------------------------- DEA buckets
def test_difficulty_buckets_by_hand():
    assert difficulty([0.2, 0.4, 0.6, 0.8]) == pytest.approx(0.5)
    assert difficulty_bucket([0.2, 0.4, 0.6, 0.8]) == "easy"  # mean 0.5: easy is >= 0.5
    assert difficulty_bucket([0.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9, 0.0]) == "medium"  # 2.7 / 8 = 0.3375
    assert difficulty_bucket([0.29] * 8) == "hard"
    assert difficulty_bucket([0.8, 0.1], easy=0.45, hard=0.2) == "easy"  # mean 0.45
    with pytest.raises(ValueError):
        difficulty_bucket([])


# ----------------------------------------------------------------------------------------------- BRA rule
def test_partial_annotation_rule_by_hand():
    # D = 30: tol = max(1, 1.5) = 1.5, zone [8.5, 21.5]; window 10 s: threshold max(2, 1) = 2
    w = (10.0, 20.0)
    assert outside_length(w, [(21.5, 23.5)], 30.0) == pytest.approx(2.0)
    assert is_partially_annotated(w, [(21.5, 23.5)], 30.0)  # exactly the threshold: "at least"
    assert not is_partially_annotated(w, [(21.6, 23.5)], 30.0)
    assert not is_partially_annotated(w, [(9.0, 21.0)], 30.0)  # inside the widened window
    assert is_partially_annotated(w, [(0.0, 1.0), (5.0, 6.0)], 30.0)  # 1 + 1 = 2 s, summed
    assert not is_partially_annotated(w, [(0.0, 1.5), (0.5, 1.9)], 30.0)  # merged: 1.9 s, not 3.3
    assert outside_length(w, [(28.0, 40.0)], 30.0) == pytest.approx(2.0)  # clipped at D
    # D = 10: tol = 1 s (not 0.5)
    assert outside_length((4.0, 5.0), [(2.0, 7.0)], 10.0) == pytest.approx(2.0)
    # a 40 s window in a 200 s video: tol = 10, threshold max(2, 4) = 4
    assert not is_partially_annotated((50.0, 90.0), [(100.0, 103.9)], 200.0)
    assert not is_partially_annotated((50.0, 90.0), [(101.0, 104.9)], 200.0)  # zone [40, 100]: 3.9 s
    assert is_partially_annotated((50.0, 90.0), [(101.0, 105.0)], 200.0)
    assert not is_partially_annotated(w, [], 30.0)


# ----------------------------------------------------------------------------------------------- selectors
def test_registry_names():
    assert {"timerft", "timerft_refilter", "dea_stratified"} <= set(SELECTORS.names())


def test_timerft_weights_and_draw_match_time_r1():
    assert timerft_weight(0.3) == 1.0
    assert timerft_weight(0.7) == pytest.approx(math.exp(-2.0))
    ious = [[0.0, 0.0], [0.3], [0.5, 0.5], [0.1], [0.9], [0.2, 0.0]]  # means 0, .3, .5, .1, .9, .1
    assert SELECTORS.get("timerft")(ious, 10, 0) == [1, 2, 3, 4, 5]  # IoU 0 dropped, all when k >= pool
    pool = [1, 2, 3, 4, 5]
    w = np.array([1.0, math.exp(-0.5), math.exp(-0.5), math.exp(-4.5), math.exp(-0.5)])
    for seed in range(5):
        np.random.seed(seed)  # Time-R1's process_data.py: global seed, then np.random.choice
        expected = sorted(pool[j] for j in np.random.choice(5, 3, replace=False, p=w / w.sum()))
        assert SELECTORS.get("timerft")(ious, 3, seed) == expected
    first = [SELECTORS.get("timerft")(ious, 1, s)[0] for s in range(3000)]
    # P(pick) for k = 1 is w / sum(w): 1 / 2.8308 = 0.353 for IoU 0.3, 0.0039 for IoU 0.9
    assert abs(first.count(1) / 3000 - 1 / w.sum()) < 0.03 and first.count(4) < 40


def test_timerft_refilter_by_hand():
    means = [0.0, 0.8, 0.7, 0.65, 0.2, 0.5, 0.1, 0.4]
    ious = [[m] for m in means]
    # kept (0 < IoU <= 0.7) sorted desc: 2 (.7), 3 (.65), 5 (.5), 7 (.4), 4 (.2), 6 (.1)
    # k 3: linspace(0, 5, 3) = 0, 2.5, 5 -> rounds to 0, 2, 5 -> samples 2, 5, 6
    assert SELECTORS.get("timerft_refilter")(ious, 3, 0) == [2, 5, 6]
    # k 4: 0, 1.67, 3.33, 5 -> 0, 2, 3, 5 -> samples 2, 5, 7, 6
    assert SELECTORS.get("timerft_refilter")(ious, 4, 0) == [2, 5, 6, 7]
    assert SELECTORS.get("timerft_refilter")(ious, 1, 0) == [2]
    assert SELECTORS.get("timerft_refilter")(ious, 9, 0) == [2, 3, 4, 5, 6, 7]


def test_dea_stratified_by_hand():
    # buckets: easy 0, 1, 2, 3, 4 (5), medium 5, 6, 7 (3), hard 8, 9 (2); k 4 -> 2.0, 1.2, 0.8 -> 2, 1, 1
    ious = [[0.9]] * 5 + [[0.4]] * 3 + [[0.1, 0.0]] * 2
    assert stratified_quotas([5, 3, 2], 4) == [2, 1, 1]
    for seed in range(20):
        got = SELECTORS.get("dea_stratified")(ious, 4, seed)
        assert len(got) == 4 == len(set(got)) and got == sorted(got)
        assert sum(i < 5 for i in got) == 2 and sum(5 <= i < 8 for i in got) == 1 and sum(i >= 8 for i in got) == 1
    assert SELECTORS.get("dea_stratified")(ious, 4, 7) == SELECTORS.get("dea_stratified")(ious, 4, 7)
    assert SELECTORS.get("dea_stratified")(ious, 50, 0) == list(range(10))
    # 10% of 30: 3 over 10 / 10 / 10 -> remainders tie at 1.0 each -> 1, 1, 1
    assert stratified_quotas([10, 10, 10], 3) == [1, 1, 1]
    assert stratified_quotas([7, 2, 1], 5) == [4, 1, 0]  # 3.5, 1.0, 0.5 -> 3, 1, 0 + 1 to easy (ties by order)
