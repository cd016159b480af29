"""KL estimators against hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch

from timegrpo.algos.kl import KL_ESTIMATORS

LP = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64)
LR = torch.tensor([[-2.0, -1.0, -0.5]], dtype=torch.float64)


def test_k1_is_the_log_ratio():
    assert KL_ESTIMATORS.get("k1")(LP, LR).tolist() == [[1.0, -1.0, 0.0]]


def test_k2_is_half_the_squared_log_ratio():
    assert KL_ESTIMATORS.get("k2")(LP, LR).tolist() == [[0.5, 0.5, 0.0]]


def test_k3_values_and_non_negativity():
    # lr - lp = -1: e^-1 + 1 - 1 = 0.36788; lr - lp = +1: e - 1 - 1 = 0.71828; equal log-probs: 0.
    got = KL_ESTIMATORS.get("k3")(LP, LR)
    assert got[0].tolist() == pytest.approx([math.exp(-1), math.e - 2, 0.0], abs=1e-12)
    deltas = torch.linspace(-5, 5, 101, dtype=torch.float64).view(1, -1)
    assert (KL_ESTIMATORS.get("k3")(torch.zeros_like(deltas), deltas) >= 0).all()


def test_k3_gradient_is_one_minus_the_probability_ratio():
    lp = LP.clone().requires_grad_(True)
    KL_ESTIMATORS.get("k3")(lp, LR).sum().backward()
    # d/dlp [exp(lr - lp) - (lr - lp) - 1] = 1 - exp(lr - lp)
    assert lp.grad[0].tolist() == pytest.approx([1 - math.exp(-1), 1 - math.e, 0.0], abs=1e-12)


def test_unknown_estimator_lists_known_ones():
    with pytest.raises(KeyError, match="known: k1, k2, k3"):
        KL_ESTIMATORS.get("k4")
