"""Each objective against TRL 1.16's ``GRPOTrainer._compute_loss`` on identical log-probs, masks and advantages.

The reference is TRL's code itself (tests/algos/conftest.py calls it on a trainer built without ``__init__``), not a
re-typed formula. Same loss and same gradient (w.r.t. the per-token log-probs) to 1e-6 for every pairing below.

How a timegrpo setting maps onto TRL's (``loss_type`` in TRL picks both the objective and the aggregation):

==========================================  =============================================================
timegrpo (objective, loss_type, level)      TRL (loss_type, importance_sampling_level)
==========================================  =============================================================
clipped, grpo/bnpo/dr_grpo/dapo, token      grpo/bnpo/dr_grpo/dapo, token
clipped or gspo, *, sequence                same loss_type, sequence (GSPO; TRL warns for bnpo/dr_grpo/dapo)
cispo, dapo, token or sequence              cispo, same level, ``epsilon_high = 1 + ours`` (TRL caps at it)
sapo, grpo, token or sequence               sapo, same level, same temperatures
use_bias_correction_kl True / False         the same switch (TRL's default True)
==========================================  =============================================================

Departures (none changes a loss or a gradient): TRL builds SAPO's temperatures in float32 (1.05 -> 1.0499999523,
a relative 5e-8 difference; ours are in the log-probs' dtype); TRL's ``cispo_clip_ratio`` counts capped tokens with
``A > 0`` only, our ``clip_ratio/high_mean`` counts every capped token; at level ``sequence`` TRL averages the clip
metrics per completion, we per token.
"""

from __future__ import annotations

import pytest
import torch

from timegrpo.algos.losses import LossSettings, PolicyLossInputs, compute_policy_loss

F64 = torch.float64


def batch(seed: int, n: int = 6, length: int = 7, spread: float = 0.3):
    """Random per-token log-probs (old and reference near them), ragged masks and advantages."""
    g = torch.Generator().manual_seed(seed)
    logps = -torch.rand(n, length, generator=g, dtype=F64) * 3
    old = logps + spread * torch.randn(n, length, generator=g, dtype=F64)
    ref = logps + 0.2 * torch.randn(n, length, generator=g, dtype=F64)
    lengths = torch.randint(1, length + 1, (n,), generator=g)
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).to(F64)
    adv = torch.randn(n, generator=g, dtype=F64)
    return logps, old, ref, mask, adv


def ours(settings, logps, old, ref, mask, adv):
    lp = logps.clone().requires_grad_(True)
    out = compute_policy_loss(PolicyLossInputs(lp, mask, adv, old, ref), settings)
    out.loss.backward()
    return out.loss.detach(), lp.grad, out.metrics


def assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-6)


CASES = [  # (our LossSettings kwargs, TRL GRPOConfig kwargs)
    *[({"loss_type": lt}, {"loss_type": lt}) for lt in ("grpo", "bnpo", "dr_grpo", "dapo")],
    ({"objective": "gspo", "loss_type": "grpo"}, {"loss_type": "grpo", "importance_sampling_level": "sequence"}),
    ({"objective": "gspo", "loss_type": "grpo", "epsilon": 3e-4, "epsilon_high": 4e-4},
     {"loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4}),
    *[({"importance_sampling_level": "sequence", "loss_type": lt},
       {"loss_type": lt, "importance_sampling_level": "sequence"}) for lt in ("bnpo", "dr_grpo", "dapo")],
    ({"objective": "cispo", "loss_type": "dapo", "epsilon_high": 0.2}, {"loss_type": "cispo", "epsilon_high": 1.2}),
    ({"objective": "cispo", "loss_type": "dapo", "epsilon_high": 4.0}, {"loss_type": "cispo", "epsilon_high": 5.0}),
    ({"objective": "cispo", "loss_type": "dapo", "epsilon_high": 0.1, "importance_sampling_level": "sequence"},
     {"loss_type": "cispo", "epsilon_high": 1.1, "importance_sampling_level": "sequence"}),
    ({"objective": "sapo", "loss_type": "grpo"}, {"loss_type": "sapo"}),
    ({"objective": "sapo", "loss_type": "grpo", "sapo_temperature_pos": 2.0, "sapo_temperature_neg": 0.5},
     {"loss_type": "sapo", "sapo_temperature_pos": 2.0, "sapo_temperature_neg": 0.5}),
    ({"objective": "sapo", "loss_type": "grpo", "importance_sampling_level": "sequence"},
     {"loss_type": "sapo", "importance_sampling_level": "sequence"}),
]


def _id(case):
    return "-".join(f"{v}" for v in case[0].values())


@pytest.mark.parametrize("kl", ["none", "k3", "k3_bias_corrected"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_same_loss_and_gradient_as_trl(case, kl, trl_loss):
    mine, theirs = dict(case[0]), dict(case[1])
    beta = 0.0 if kl == "none" else 0.04
    corrected = kl == "k3_bias_corrected"
    mine.update(beta=beta, use_bias_correction_kl=corrected, max_completion_length=7)
    theirs.update(beta=beta, use_bias_correction_kl=corrected, max_completion_length=7)
    for seed in (0, 1):
        logps, old, ref, mask, adv = batch(seed)
        got = ours(LossSettings(**mine), logps, old, ref, mask, adv)
        want = trl_loss(logps, mask, adv, old=old, ref=ref if beta else None, **theirs)
        assert_same(got, want)
        if beta:
            assert got[2]["kl"].item() == pytest.approx(want[2]["kl"], abs=1e-6)  # TRL's global masked mean


def test_on_policy_old_logps_none_matches_trl(trl_loss):
    """num_iterations 1: both sides take ``old = logps.detach()`` themselves (rho == 1)."""
    logps, _, ref, mask, adv = batch(2)
    for mine, theirs in CASES[4:5] + CASES[9:10] + CASES[12:13]:
        got = ours(LossSettings(**mine, beta=0.04, use_bias_correction_kl=True), logps, None, ref, mask, adv)
        want = trl_loss(logps, mask, adv, ref=ref, beta=0.04, use_bias_correction_kl=True, **theirs)
        assert_same(got, want)


def test_clip_metrics_match_trl_at_token_level(trl_loss):
    logps, old, _, mask, adv = batch(3, spread=0.5)
    got = ours(LossSettings(loss_type="dapo", epsilon_high=0.28), logps, old, None, mask, adv)[2]
    want = trl_loss(logps, mask, adv, old=old, loss_type="dapo", epsilon_high=0.28)[2]
    for key in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"):
        assert got[key].item() == pytest.approx(want[key], abs=1e-6), key  # TRL's is float32
    assert 0 < want["clip_ratio/region_mean"] < 1  # the inputs do clip some tokens
