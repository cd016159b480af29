"""Group-relative advantages (GRPO, Dr.GRPO) as registered pure tensor functions.

Rewards arrive as one flat tensor ``(B*G,)`` holding ``B`` groups of ``G = num_generations`` completions,
each group contiguous (completions ``i*G .. i*G + G - 1`` answer prompt ``i``). The output has the same shape.

``grpo`` (Time-R1, TRL ``scale_rewards``):

* ``A_i = (r_i - mean_G) / (s + std_eps)`` where ``s`` is
  - ``"group"``: the std of the completion's own group (Time-R1, TRL's default),
  - ``"batch"``: the std of all rewards passed in (TRL: the gathered generation batch, PPO-Lite),
  - ``"none"``: no division at all (``A_i = r_i - mean_G``, Dr.GRPO); ``std_eps`` is then unused.
* ``std_eps = 1e-4`` and the **sample** std (Bessel-corrected, ``unbiased_std=True``, as ``torch.std``) are what
  Time-R1 (``(r - mean_G) / (std_G + 1e-4)``) and TRL 1.16 (``nanstd``, ``+ 1e-4``) both use; they are parameters so
  a population std or another epsilon is an explicit choice, never a hidden one.

``dr_grpo``: ``A_i = r_i - mean_G`` (no std: Dr.GRPO removes the question-difficulty bias of the std).

Departures from the papers, all on edge cases the papers do not define:

* A group whose valid rewards are all equal (or that has fewer than two valid rewards) gets **exactly** zero
  advantage. The formula gives ``0 / (0 + eps) = 0`` only up to rounding of the mean (``mean([0.1] * 3)`` is not
  exactly ``0.1`` in float32), so the zero is written explicitly.
* A ``NaN`` reward (TRL's protocol: a reward function returned ``None`` for every component) is left out of its
  group's mean and std and gets advantage 0, as in TRL 1.16.

>>> import torch
>>> r = torch.tensor([1.0, 0.0, 0.5, 0.5])
>>> group_relative_advantages(r, 2, scale_rewards="none")
tensor([ 0.5000, -0.5000,  0.0000,  0.0000])
>>> zero_variance_share(r, 2)
0.5
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from timegrpo.registry import Registry

SCALE_REWARDS = ("group", "batch", "none")


class AdvantageFn(Protocol):
    def __call__(
        self,
        rewards: Tensor,
        num_generations: int,
        *,
        scale_rewards: str = "group",
        std_eps: float = 1e-4,
        unbiased_std: bool = True,
    ) -> Tensor: ...


#: Advantage estimators by name (``train.advantage_estimator``).
ADVANTAGES: Registry[AdvantageFn] = Registry("advantage estimator")


def _grouped(rewards: Tensor, num_generations: int) -> Tensor:
    """``(B*G,)`` -> ``(B, G)``, with clear errors for a wrong shape."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (B*G,), got shape {tuple(rewards.shape)}")
    if num_generations < 1 or rewards.numel() % num_generations != 0:
        raise ValueError(
            f"{rewards.numel()} rewards cannot be split into groups of num_generations={num_generations}"
        )
    return rewards.view(-1, num_generations)


def _nan_mean_std(values: Tensor, dim: int | None, unbiased: bool) -> tuple[Tensor, Tensor]:
    """Mean and std over ``dim`` (all elements when None) ignoring NaN; std is NaN with too few values."""
    valid = ~torch.isnan(values)
    filled = torch.where(valid, values, torch.zeros_like(values))
    dims = dim if dim is not None else tuple(range(values.dim()))
    count = valid.sum(dim=dims, keepdim=True).to(values.dtype)
    mean = filled.sum(dim=dims, keepdim=True) / count.clamp(min=1)
    sq = torch.where(valid, (values - mean) ** 2, torch.zeros_like(values)).sum(dim=dims, keepdim=True)
    dof = count - 1 if unbiased else count
    std = torch.where(dof > 0, (sq / dof.clamp(min=1)).sqrt(), torch.full_like(sq, float("nan")))
    return mean, std


def zero_variance_groups(rewards: Tensor, num_generations: int) -> Tensor:
    """Boolean ``(B,)``: True where a group carries no learning signal.

    That is: all its non-NaN rewards are exactly equal, or it has fewer than two non-NaN rewards.

    >>> zero_variance_groups(torch.tensor([1.0, 1.0, 0.0, 1.0, float("nan"), 2.0]), 2)
    tensor([ True, False,  True])
    """
    grouped = _grouped(rewards, num_generations)
    valid = ~torch.isnan(grouped)
    hi = torch.where(valid, grouped, torch.full_like(grouped, -float("inf"))).amax(dim=1)
    lo = torch.where(valid, grouped, torch.full_like(grouped, float("inf"))).amin(dim=1)
    return (valid.sum(dim=1) < 2) | (hi == lo)


def zero_variance_share(rewards: Tensor, num_generations: int) -> float:
    """Share of groups in ``rewards`` ``(B*G,)`` with zero variance (see :func:`zero_variance_groups`), in [0, 1].

    Logged every step: those groups contribute no policy gradient (only the KL term).
    """
    return float(zero_variance_groups(rewards, num_generations).float().mean().item())


@ADVANTAGES.register("grpo")
def group_relative_advantages(
    rewards: Tensor,
    num_generations: int,
    *,
    scale_rewards: str = "group",
    std_eps: float = 1e-4,
    unbiased_std: bool = True,
) -> Tensor:
    """GRPO advantages ``(B*G,)`` from rewards ``(B*G,)``: ``(r - mean_G) / (std + std_eps)``.

    ``scale_rewards`` picks the std: ``"group"`` (per group), ``"batch"`` (all rewards given; pass the rewards
    gathered from every process to match TRL) or ``"none"`` (no division). Zero-variance groups and NaN
    rewards get exactly 0.

    >>> r = torch.tensor([1.0, 0.0, 0.0, 0.0])  # group 1: sample std 0.7071; group 2: constant
    >>> group_relative_advantages(r, 2)
    tensor([ 0.7070, -0.7070,  0.0000,  0.0000])
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}, got {scale_rewards!r}")
    grouped = _grouped(rewards, num_generations)
    mean, group_std = _nan_mean_std(grouped, dim=1, unbiased=unbiased_std)
    centred = grouped - mean
    if scale_rewards == "group":
        centred = centred / (group_std + std_eps)
    elif scale_rewards == "batch":
        _, batch_std = _nan_mean_std(rewards, dim=None, unbiased=unbiased_std)
        centred = centred / (batch_std + std_eps)
    silent = zero_variance_groups(rewards, num_generations).unsqueeze(1) | torch.isnan(grouped)
    return torch.where(silent, torch.zeros_like(centred), centred).reshape(-1)


@ADVANTAGES.register("dr_grpo")
def dr_grpo_advantages(
    rewards: Tensor,
    num_generations: int,
    *,
    scale_rewards: str = "none",
    std_eps: float = 1e-4,
    unbiased_std: bool = True,
) -> Tensor:
    """Dr.GRPO advantages ``(B*G,)``: ``r - mean_G``, never divided by a std.

    ``scale_rewards`` must be ``"none"`` (anything else contradicts Dr.GRPO and is an error rather than
    being ignored); ``std_eps`` and ``unbiased_std`` are unused.

    >>> dr_grpo_advantages(torch.tensor([3.0, 1.0, 2.0, 2.0]), 2)
    tensor([ 1., -1.,  0.,  0.])
    """
    if scale_rewards != "none":
        raise ValueError(
            f"advantage_estimator 'dr_grpo' divides by no std, but scale_rewards={scale_rewards!r}; "
            "set scale_rewards to 'none' (or use advantage_estimator 'grpo')"
        )
    return group_relative_advantages(rewards, num_generations, scale_rewards="none")
