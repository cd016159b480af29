"""The trainer's per-sample, step-aware frame transform (curriculum masking from the recipe's ``masking`` section):
which frames of which sample are black at which step, worked out by hand, in every path that loads training
frames (in the loop, in prefetching threads, in dynamic-sampling draws and re-assembly); the per-step metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import timegrpo.trainer.grpo as grpo_module
import timegrpo.trainer.prefetch as prefetch_module
from timegrpo.config import ConfigError, load_recipe
from timegrpo.data.source import frame_times, video_source
from timegrpo.data.synthetic import SynthConfig, generate, load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.trainer.build import build_frame_transform
from timegrpo.trainer.grpo import GRPOTrainer

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"
FAST = ["--train.max_steps", "2", "--train.per_device_train_batch_size", "2", "--train.num_generations", "2",
        "--train.max_completion_length", "4", "--train.shuffle_dataset", "false", "--train.save_steps", "0",
        "--train.logging_steps", "1", "--masking.max_fraction", "0.8", "--masking.until", "1.0"]

# 8 s videos at 2 fps: frames at t = 0, 0.5, ..., 7.5 (i = 2t). K = 2 steps, until 1.0: m(0) = 0.8, m(1) = 0.4.
# A = sample 0, window [3, 4.5]: frames 6-9 inside, 12 outside; distances to the window (s): i0 3, i1 2.5, i2 2,
#   i3 1.5, i4 1, i5 .5 | i10 .5, i11 1, i12 1.5, i13 2, i14 2.5, i15 3.
#   step 0: int(0.8 * 12) = 9 farthest, earlier on ties: 0, 15, 1, 14, 2, 13, 3, 12, 4.   step 1: int(4.8) = 4.
# C = sample 2, window [0, 1]: frames 0-2 inside, 13 outside at distance t - 1.
#   step 0: int(0.8 * 13) = 10 farthest: frames 6..15.   step 1: int(0.4 * 13) = 5: frames 11..15.
# B = sample 1 (easy) and D = sample 3 (medium) are never masked (buckets: hard).
EXPECTED = {("A", 0): [0, 1, 2, 3, 4, 12, 13, 14, 15], ("A", 1): [0, 1, 14, 15],
            ("C", 0): list(range(6, 16)), ("C", 1): list(range(11, 16))}


@pytest.fixture(scope="module")
def eight_second_videos(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth8")
    generate(SynthConfig(n=4, seed=3, val_size=0, test_size=0, min_duration=8, max_duration=8), out)
    samples = load_split(out, "train")
    plan = [("A", [(3.0, 4.5)], "hard"), ("B", [(3.0, 4.5)], "easy"), ("C", [(0.0, 1.0)], "hard"),
            ("D", [(2.0, 3.0)], "medium")]
    return [dataclasses.replace(s, qid=name, windows=windows, meta={"difficulty_bucket": bucket})
            for s, (name, windows, bucket) in zip(samples, plan, strict=True)]


def make_trainer(samples, out, *overrides):
    cfg = load_recipe(RECIPE, [*FAST, "--train.output_dir", str(out), *overrides])
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    return GRPOTrainer(cfg, prepare_policy(model), processor, samples, video_source(recommended_sampling()),
                       frame_transform=build_frame_transform(cfg, samples))


def record_frames(monkeypatch, trainer):
    """Every training-frame load as ``(qid, step being trained when loaded, black frame indices)``."""
    seen = []

    def wrap(real):
        def prompt_inputs(processor, samples, videos, template):
            for s in samples:
                frames, _ = videos(s)
                seen.append((s.qid, trainer.state["step"], [i for i in range(frames.shape[0])
                                                            if float(frames[i].abs().sum()) == 0.0]))
            return real(processor, samples, videos, template)
        return prompt_inputs

    monkeypatch.setattr(prefetch_module, "prompt_inputs", wrap(prefetch_module.prompt_inputs))
    monkeypatch.setattr(grpo_module, "prompt_inputs", wrap(grpo_module.prompt_inputs))
    return seen


def test_the_fixture_has_16_frames_half_a_second_apart(eight_second_videos):
    assert frame_times(video_source(recommended_sampling())(eight_second_videos[0])[1]) == [i / 2 for i in range(16)]


@pytest.mark.parametrize("workers", [0, 2])
def test_masked_frames_per_sample_and_step(eight_second_videos, tmp_path, monkeypatch, workers):
    trainer = make_trainer(eight_second_videos, tmp_path, "--data.num_workers", str(workers))
    seen = record_frames(monkeypatch, trainer)
    history = trainer.train(progress=False)
    # step 0 takes A, B; step 1 takes C, D (no shuffle); each loaded once, in whichever thread
    assert {q: black for q, _, black in seen} == {"A": EXPECTED["A", 0], "B": [], "C": EXPECTED["C", 1], "D": []}
    assert len(seen) == 4
    assert [round(m["masking/fraction"], 6) for m in history] == [0.8, 0.4]
    assert [m["masking/masked_share"] for m in history] == [9 / 32, 5 / 32]
    assert [m["masking/bucket_share"] for m in history] == [0.5, 0.5]
    assert all("frac_reward_zero_std" in m for m in history)  # VideoTG-R1's zero-variance group share


def test_dynamic_sampling_draws_and_reassembly_get_their_steps_frames(eight_second_videos, tmp_path, monkeypatch):
    trainer = make_trainer(eight_second_videos, tmp_path, "--train.dynamic_sampling", "true",
                           "--train.max_resample", "2")
    seen = record_frames(monkeypatch, trainer)
    history = trainer.train(progress=False)
    assert len(seen) > 4  # draws and the re-assembled micro-batches load frames
    for qid, step, black in seen:
        assert black == EXPECTED.get((qid, step), []), (qid, step)
    assert {step for _, step, _ in seen} == {0, 1} and len(history) == 2


def test_masking_needs_difficulty_buckets(eight_second_videos, tmp_path):
    cfg = load_recipe(RECIPE, [*FAST, "--train.output_dir", str(tmp_path)])
    bare = [dataclasses.replace(s, meta={}) for s in eight_second_videos]
    with pytest.raises(ConfigError, match=r"masking.max_fraction: .*no sample .* difficulty bucket.*"
                                          r"curriculum score.*select --method dea_stratified"):
        build_frame_transform(cfg, bare)
    assert build_frame_transform(load_recipe(RECIPE, []), bare) is None  # off by default: nothing checked


def test_masking_section_is_validated():
    with pytest.raises(ConfigError, match=r"masking.order: 'nearest' is not one of farthest, random"):
        load_recipe(RECIPE, ["--masking.order", "nearest"])
    with pytest.raises(ConfigError, match=r"masking.buckets\[1\]: 'hardest' is not one of easy, medium, hard"):
        load_recipe(RECIPE, ["--masking.buckets", "hard,hardest"])
    with pytest.raises(ConfigError, match=r"masking.until: must be in \(0, 1\]"):
        load_recipe(RECIPE, ["--masking.until", "0"])


def test_config_bucket_names_are_the_difficulty_agents():
    from timegrpo.config.curriculum import DIFFICULTY_BUCKETS
    from timegrpo.curriculum.difficulty import BUCKETS

    assert DIFFICULTY_BUCKETS == BUCKETS
