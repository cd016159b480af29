"""Curriculum masking as a step-bound frame transform over a real video source: hard samples only, the
ground-truth frames and the timestamps untouched, the schedule's share masked, tallied per step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from timegrpo.curriculum.masking import CurriculumMasking, inside_windows
from timegrpo.data.source import at_step, frame_times, video_source
from timegrpo.data.synthetic import load_split, recommended_sampling


def test_masking_through_a_real_source(synth_dir):
    samples = load_split(synth_dir, "train")
    videos = video_source(recommended_sampling())
    hard = dataclasses.replace(samples[0], meta={**samples[0].meta, "difficulty_bucket": "hard"})
    easy = dataclasses.replace(samples[1], meta={**samples[1].meta, "difficulty_bucket": "easy"})
    masking = CurriculumMasking(order="farthest")
    frames, meta = videos(hard)
    times = frame_times(meta)
    assert times[:3] == [0.0, 0.5, 1.0]  # 2 fps, every frame
    inside = [inside_windows(t, hard.windows) for t in times]
    n_out = inside.count(False)
    # step 1 of 10: m = 0.8 * (1 - 1 / 5) = 0.64
    got, meta1 = at_step(videos, masking, 1, 10)(hard)
    assert meta1.frames_indices == meta.frames_indices and got.shape == frames.shape
    black = [bool(got[i].abs().sum() == 0) for i in range(len(times))]
    assert sum(black) == int(0.64 * n_out)
    for i, b in enumerate(black):
        if inside[i] or not b:
            assert torch.equal(got[i], frames[i])
    assert torch.equal(at_step(videos, masking, 1, 10)(easy)[0], videos(easy)[0])
    stats = masking.pop_stats(1)
    assert stats["masking/fraction"] == pytest.approx(0.64) and stats["masking/bucket_share"] == 0.5
    total = len(times) + videos(easy)[0].shape[0]
    assert stats["masking/masked_share"] == pytest.approx(int(0.64 * n_out) / total)
    assert masking.pop_stats(1)["masking/masked_share"] == 0.0  # forgotten once popped
    assert torch.equal(at_step(videos, masking, 5, 10)(hard)[0], frames)  # m(5 of 10) = 0
    assert masking.pop_stats(5)["masking/masked_share"] == 0.0


def test_random_order_is_the_same_on_a_rerun(synth_dir):
    sample = load_split(synth_dir, "train")[2]
    sample = dataclasses.replace(sample, meta={"difficulty_bucket": "hard"})
    videos = video_source(recommended_sampling())
    a = at_step(videos, CurriculumMasking(order="random", seed=1), 0, 4)(sample)[0]
    b = at_step(videos, CurriculumMasking(order="random", seed=1), 0, 4)(sample)[0]
    assert torch.equal(a, b)


def test_a_transform_may_not_change_the_frame_count(synth_dir):
    sample = load_split(synth_dir, "train")[0]
    videos = video_source(recommended_sampling())
    with pytest.raises(ValueError, match="must keep their number"):
        at_step(videos, lambda s, f, m, k, n: f[1:], 0, 1)(sample)
