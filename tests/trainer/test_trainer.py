"""The GRPO loop: a step trains what it should, resumes exactly, and is invariant to the process layout."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from timegrpo.config import load_recipe
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.rewards.base import REWARDS, register_reward
from timegrpo.trainer.grpo import GRPOTrainer

if "test_length" not in REWARDS:  # a random tiny model scores 0 on tiou/format: give GRPO a signal to follow

    @register_reward("test_length")
    def _length_reward(completions, **columns):
        return [len(c[0]["content"]) / 50.0 for c in completions]  # TRL's conversational form

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"
FAST = ["--train.reward_funcs", "test_length,format", "--train.num_generations", "4", "--train.max_completion_length", "8", "--train.per_device_train_batch_size",
        "2", "--train.save_steps", "0", "--train.logging_steps", "1"]


def make_trainer(synth_dir, out, *overrides, seed=0):
    cfg = load_recipe(RECIPE, [*FAST, "--train.output_dir", str(out), *overrides])
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=seed)
    model = prepare_policy(model)
    return GRPOTrainer(cfg, model, processor, load_split(synth_dir, "train"), video_source(recommended_sampling()))


def params_of(trainer):
    return {n: p.detach().clone() for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}


def test_one_step_trains_llm_and_merger_not_vision_tower(synth_dir, tmp_path):
    trainer = make_trainer(synth_dir, tmp_path, "--train.max_steps", "1", "--train.beta", "0.04")
    before = params_of(trainer)
    metrics = trainer.train_step()
    after = params_of(trainer)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert any(n.startswith("model.language_model") for n in changed)
    assert any(".merger." in n for n in changed)
    assert not any(n.startswith("model.visual.") and ".merger." not in n for n in changed)
    # the vision tower ran once per prompt: 2 prompts, not 2 x (G generations + old/ref/train forwards)
    assert metrics["vision_tower_calls"] == metrics["prompts"] == 2
    for key in ("reward", "rewards/test_length/mean", "rewards/format/std", "kl", "frac_reward_zero_std",
                "completions/mean_length", "loss", "clip_ratio/region_mean"):
        assert key in metrics, key
    assert "iou" not in metrics  # no reward reported an IoU, and the trainer parses nothing itself
    assert metrics["completions/mean_length"] <= 8


def test_logged_iou_is_the_one_the_rewards_report(synth_dir, tmp_path):
    """``iou`` is what the rewards reported (``extra["iou"]``, None as NaN), not a re-parse."""
    from timegrpo.rewards import RewardBreakdown

    trainer = make_trainer(synth_dir, tmp_path, "--train.max_steps", "1", "--train.num_generations", "2")
    samples = trainer.samples[:1]

    def rewards(completions, **columns):
        out = RewardBreakdown(total=[0.5, 1.0], per_func={"tiou": [0.5, 1.0]})
        out.extra = {"iou": [0.25, None]}
        return out

    trainer.rewards = rewards
    batch = SimpleNamespace(completions=["<answer>1 to 2</answer>", "nonsense"], num_generations=2,
                            completion_ids=torch.tensor([[5, 6, 2], [7, 2, 0]]),
                            completion_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]))
    total, values, _ = trainer.score(batch, samples)
    assert total.tolist() == [0.5, 1.0]
    assert values["iou"][0] == 0.25 and torch.isnan(values["iou"][1])  # None: no IoU, left out of the mean
    assert values["rewards/tiou/mean"].tolist() == [0.5, 1.0]


def test_resume_reaches_the_same_parameters(synth_dir, tmp_path):
    full = make_trainer(synth_dir, tmp_path / "full", "--train.max_steps", "3")
    full.train()
    target = params_of(full)

    first = make_trainer(synth_dir, tmp_path / "cut", "--train.max_steps", "3", "--train.save_steps", "2")
    first.train_step()
    first.train_step()
    ckpt = first.save_checkpoint()
    del first  # the run is "killed" after its step-2 checkpoint

    resumed = make_trainer(synth_dir, tmp_path / "cut", "--train.max_steps", "3", seed=123)  # other init weights
    resumed.load_checkpoint(ckpt)
    assert resumed.state["step"] == 2
    resumed.train()
    got = params_of(resumed)
    for name, value in target.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    # the checkpoint folder also loads as a plain transformers model
    from transformers import AutoModelForImageTextToText

    assert AutoModelForImageTextToText.from_pretrained(ckpt).config.model_type == "qwen2_5_vl"


def test_two_processes_equal_one_process_with_twice_the_accumulation(two_layouts):
    """torchrun --nproc_per_node 2 (Accelerate forms a real 2-rank gloo group on CPU) == 1 process x accum 2,
    with a linear warm-up and decay: the schedule advances once per optimiser step whatever the number of
    processes (warm-up counts optimiser steps), so both layouts log the same learning rate at every step and
    reach the same parameters (checked by the fixture, 1e-5)."""
    common = [*FAST, "--train.per_device_train_batch_size", "1", "--train.max_steps", "4", "--train.beta", "0.04",
              "--train.loss_type", "grpo", "--train.lr_scheduler_type", "linear", "--train.warmup_ratio", "0.5"]
    one, r0 = two_layouts("grpo", *common)
    # 2 warm-up steps of 4: the rate after step k is 3e-4 * [k/2 while warming up, then (4-k)/(4-2)]
    expected = [3e-4 * x for x in (0.5, 1.0, 0.5, 0.0)]
    assert [a["learning_rate"] for a in one["history"]] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert [b["learning_rate"] for b in r0["history"]] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    for a, b in zip(one["history"], r0["history"], strict=True):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)


def test_masked_truncated_completions_carry_no_gradient(synth_dir, tmp_path):
    """``mask_truncated_completions`` (DAPO): a completion cut at max_completion_length is left out of the loss.
    The random tiny model never ends within 2 tokens (seeded rollouts), so every completion is truncated: nothing
    may train."""
    short = ["--train.max_steps", "1", "--train.max_completion_length", "2"]
    trainer = make_trainer(synth_dir, tmp_path, *short, "--train.mask_truncated_completions", "true")
    before = params_of(trainer)
    metrics = trainer.train_step()
    assert metrics["completions/clipped_ratio"] == 1.0
    assert all(torch.equal(before[n], p) for n, p in params_of(trainer).items())
    unmasked = make_trainer(synth_dir, tmp_path / "unmasked", *short)
    start = params_of(unmasked)
    unmasked.train_step()  # the same truncated completions train when they are not masked
    assert any(not torch.equal(start[n], p) for n, p in params_of(unmasked).items())


def test_batch_scaled_advantages_see_every_process(two_layouts):
    """``scale_rewards: batch`` divides by the std of the whole step's rewards, gathered over the processes: with
    a rank-local std, 2 processes x 1 would train differently from 1 process x 2 (the fixture checks 1e-5)."""
    common = [*FAST, "--train.per_device_train_batch_size", "1", "--train.max_steps", "2",
              "--train.scale_rewards", "batch", "--train.loss_type", "grpo"]
    one, r0 = two_layouts("grpo", *common)
    for a, b in zip(one["history"], r0["history"], strict=True):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-6)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
