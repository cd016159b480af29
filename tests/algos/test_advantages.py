"""Group-relative advantages against hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch

from timegrpo.algos.advantages import (
    ADVANTAGES,
    dr_grpo_advantages,
    group_relative_advantages,
    zero_variance_groups,
    zero_variance_share,
)

# Two groups of G = 4: group 1 = [1, 0, 0, 1] (mean 0.5), group 2 = [2, 0, 1, 1] (mean 1).
REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 1.0, 1.0], dtype=torch.float64)


def test_group_scaling_uses_sample_std_and_eps_1e4():
    # group 1: squared deviations 4 * 0.25 = 1, sample var 1/3; group 2: squares 1 + 1 + 0 + 0 = 2, var 2/3.
    s1, s2 = math.sqrt(1 / 3), math.sqrt(2 / 3)
    a, b = 0.5 / (s1 + 1e-4), 1.0 / (s2 + 1e-4)
    expected = [a, -a, -a, a, b, -b, 0.0, 0.0]
    got = group_relative_advantages(REWARDS, 4, scale_rewards="group")
    assert got.tolist() == pytest.approx(expected, abs=1e-12)
    assert got[0].item() == pytest.approx(0.86588, abs=1e-5)  # 0.5 / 0.577450


def test_batch_scaling_divides_by_the_std_of_all_rewards():
    # all 8: mean 0.75, squared deviations sum to 3.5, sample var 3.5 / 7 = 0.5, std 0.70711.
    s = math.sqrt(0.5)
    centred = [0.5, -0.5, -0.5, 0.5, 1.0, -1.0, 0.0, 0.0]
    got = group_relative_advantages(REWARDS, 4, scale_rewards="batch")
    assert got.tolist() == pytest.approx([c / (s + 1e-4) for c in centred], abs=1e-12)


def test_none_scaling_only_centres_and_matches_dr_grpo():
    centred = [0.5, -0.5, -0.5, 0.5, 1.0, -1.0, 0.0, 0.0]
    assert group_relative_advantages(REWARDS, 4, scale_rewards="none").tolist() == centred
    assert dr_grpo_advantages(REWARDS, 4).tolist() == centred


def test_population_std_and_eps_are_explicit_parameters():
    # population std of group 1 is 0.5; eps 0 -> exactly +-1.
    got = group_relative_advantages(REWARDS[:4], 4, unbiased_std=False, std_eps=0.0)
    assert got.tolist() == [1.0, -1.0, -1.0, 1.0]


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_zero_variance_group_gets_exactly_zero(scale):
    # float32 mean of eight 0.3 is not exactly 0.3: the naive formula leaves 3e-8 / 1e-4 = 3e-4.
    rewards = torch.cat([torch.full((8,), 0.3), torch.tensor([1.0, 0.0] * 4)])
    naive = (rewards[:8] - rewards[:8].mean()) / (rewards[:8].std() + 1e-4)
    assert naive.abs().max().item() > 1e-5
    got = group_relative_advantages(rewards, 8, scale_rewards=scale)
    assert torch.equal(got[:8], torch.zeros(8))
    assert got[8:].abs().min().item() >= 0.5  # the other group keeps its signal


def test_nan_reward_is_left_out_of_the_group_and_gets_zero():
    # group [1, nan, 0]: valid [1, 0], mean 0.5, sample std 0.70711.
    got = group_relative_advantages(torch.tensor([1.0, float("nan"), 0.0], dtype=torch.float64), 3)
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert got.tolist() == pytest.approx([a, 0.0, -a], abs=1e-12)


def test_zero_variance_share_counts_constant_and_single_valid_groups():
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, float("nan"), 2.0, 0.5, 0.5])
    assert zero_variance_groups(rewards, 2).tolist() == [True, False, True, True]
    assert zero_variance_share(rewards, 2) == 0.75
    assert zero_variance_share(REWARDS, 4) == 0.0


def test_registry_and_errors():
    assert ADVANTAGES.names() == ["dr_grpo", "grpo"]
    with pytest.raises(ValueError, match="groups of num_generations=3"):
        group_relative_advantages(REWARDS, 3)
    with pytest.raises(ValueError, match="1-D"):
        group_relative_advantages(REWARDS.view(2, 4), 4)
    with pytest.raises(ValueError, match="scale_rewards must be one of"):
        group_relative_advantages(REWARDS, 4, scale_rewards="std")
    with pytest.raises(ValueError, match="set scale_rewards to 'none'"):
        ADVANTAGES.get("dr_grpo")(REWARDS, 4, scale_rewards="group")


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_vectorised_advantages_match_a_loop(scale):
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 4, (6 * 5,), generator=g).to(torch.float64) / 3  # ties and constant groups likely
    got = group_relative_advantages(rewards, 5, scale_rewards=scale).tolist()
    flat = rewards.tolist()
    mean_all = sum(flat) / len(flat)
    batch_std = math.sqrt(sum((r - mean_all) ** 2 for r in flat) / (len(flat) - 1))
    want = []
    for i in range(0, len(flat), 5):
        group = flat[i:i + 5]
        mean = sum(group) / 5
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / 4)
        scale_by = {"group": std + 1e-4, "batch": batch_std + 1e-4, "none": 1.0}[scale]
        want += [0.0 if max(group) == min(group) else (r - mean) / scale_by for r in group]
    assert got == pytest.approx(want, abs=1e-12)
