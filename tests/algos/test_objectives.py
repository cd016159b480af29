"""GSPO, CISPO, SAPO, the importance-sampling levels and the bias-corrected KL against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from timegrpo.algos.importance import IMPORTANCE_LEVELS
from timegrpo.algos.losses import LossSettings, PolicyLossInputs, compute_policy_loss

F64 = torch.float64
LN2 = math.log(2.0)


def t64(rows):
    return torch.tensor(rows, dtype=F64)


def run(settings, logps, mask, advantages, *, old=None, ref=None):
    """Loss, d loss / d logps and metrics for one micro-batch."""
    lp = logps.clone().to(F64).requires_grad_(True)
    out = compute_policy_loss(PolicyLossInputs(lp, mask.to(F64), advantages, old, ref), settings)
    out.loss.backward()
    return out.loss.item(), lp.grad, {k: v.item() for k, v in out.metrics.items()}


def close(got, expected):
    torch.testing.assert_close(got, t64(expected), rtol=1e-12, atol=1e-12)


# Three completions of 3, 2 and 1 tokens (padding log-probs are garbage: they must not matter), lp_old = 0:
# token ratios [2, 1, 0.5], [1.5, 1.5], [1.5] -> sequence ratios s = exp(mean log rho) = 1, 1.5, 1.5.
MASK = t64([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
OLD = torch.zeros(3, 3, dtype=F64)
LOGPS = t64([[LN2, 0.0, -LN2], [math.log(1.5), math.log(1.5), 9.0], [math.log(1.5), 7.0, -7.0]])
ADV = t64([1.0, -1.0, 1.0])


def test_sequence_level_is_the_masked_mean_log_ratio_broadcast():
    log_w = IMPORTANCE_LEVELS.get("sequence")(LOGPS - OLD, MASK)
    close(log_w.exp(), [[1.0] * 3, [1.5] * 3, [1.5] * 3])
    assert IMPORTANCE_LEVELS.get("token")(LOGPS, MASK) is LOGPS
    empty = IMPORTANCE_LEVELS.get("sequence")(t64([[3.0, 4.0]]), t64([[0, 0]]))
    close(empty, [[0.0, 0.0]])  # a completion with no token: log s = 0
    padded = IMPORTANCE_LEVELS.get("sequence")(t64([[0.2, math.inf, -math.inf]]), t64([[1, 0, 0]]))
    close(padded, [[0.2] * 3])  # an infinite log-ratio on padding does not turn the weight into NaN


def test_gspo_clips_whole_sequences_and_spreads_the_gradient_over_their_tokens():
    loss, grad, m = run(LossSettings(objective="gspo", loss_type="grpo"), LOGPS, MASK, ADV, old=OLD)
    # seq 1: s = 1, A = +1 -> -1 per token.  seq 2: s = 1.5, A = -1 -> -min(-1.5, -1.2) = 1.5 (not clipped).
    # seq 3: s = 1.5, A = +1 -> -min(1.5, 1.2) = -1.2, clipped.  grpo: mean of the token-means.
    assert loss == pytest.approx((-1.0 + 1.5 - 1.2) / 3, abs=1e-12)
    # d s_i / d lp_it = s_i / |y_i|; each sequence weighs 1/3: seq 1 -(1/3)(1/3); seq 2 +(1/3)(1.5/2); seq 3 clipped.
    close(grad, [[-1 / 9] * 3, [0.25, 0.25, 0.0], [0.0, 0.0, 0.0]])
    assert m["clip_ratio/high_mean"] == pytest.approx(1 / 6)  # the one token of seq 3, of 6 tokens
    assert m["ratio/min"] == pytest.approx(1.0) and m["ratio/max"] == pytest.approx(1.5)


def test_clipped_at_sequence_level_is_gspo_and_at_token_level_is_not():
    gspo = run(LossSettings(objective="gspo", loss_type="bnpo"), LOGPS, MASK, ADV, old=OLD)
    seq = run(LossSettings(importance_sampling_level="sequence", loss_type="bnpo"), LOGPS, MASK, ADV, old=OLD)
    assert gspo[0] == seq[0] and torch.equal(gspo[1], seq[1])
    token = run(LossSettings(loss_type="bnpo"), LOGPS, MASK, ADV, old=OLD)
    # token level, seq 1: rho 2 clipped at 1.2 (no grad), rho 1 -> grad -1/6, rho 0.5 -> -min(0.5, 0.8): grad -0.5/6
    close(token[1][0], [0.0, -1 / 6, -0.5 / 6])
    with pytest.raises(ValueError, match="'gspo' is the sequence-level ratio"):
        run(LossSettings(objective="gspo", importance_sampling_level="token"), LOGPS, MASK, ADV, old=OLD)


def test_every_objective_is_the_policy_gradient_when_rho_is_one():
    # old_logps=None (num_iterations 1): -A / n_tokens per token under bnpo, at either level, for all four.
    expected = (-ADV.unsqueeze(1) * MASK / MASK.sum()).tolist()
    for objective in ("clipped", "gspo", "cispo", "sapo"):
        _, grad, m = run(LossSettings(objective=objective, loss_type="bnpo"), LOGPS, MASK, ADV)
        close(grad, expected)
        assert m["ratio/min"] == m["ratio/max"] == 1.0 and m["clip_ratio/region_mean"] == 0.0


CISPO_LP = t64([[LN2, -LN2], [LN2, -LN2]])  # rho = 2 and 0.5 in both completions (lp_old = 0)
CISPO_ADV = t64([1.0, -1.0])


def test_cispo_caps_the_weight_and_keeps_every_tokens_gradient():
    loss, grad, m = run(LossSettings(objective="cispo", loss_type="bnpo", epsilon_high=0.2), CISPO_LP,
                        torch.ones(2, 2), CISPO_ADV, old=torch.zeros(2, 2, dtype=F64))
    # weight sg(min(rho, 1.2)) = [1.2, 0.5]; per token -w * A * lp: [-1.2 ln2, +0.5 ln2] and the negatives: sum 0.
    assert loss == pytest.approx(0.0, abs=1e-15)
    # d/d lp = -w * A / 4: the rho = 2 token with A > 0 keeps gradient -1.2 / 4 (PPO-clip would give it 0).
    close(grad, [[-0.3, -0.125], [0.3, 0.125]])
    assert m["clip_ratio/high_mean"] == 0.5 and m["clip_ratio/low_mean"] == 0.0  # capped: both rho = 2 tokens
    ppo = run(LossSettings(loss_type="bnpo", epsilon_high=0.2), CISPO_LP, torch.ones(2, 2), CISPO_ADV,
              old=torch.zeros(2, 2, dtype=F64))
    assert ppo[1][0, 0] == 0.0


def test_cispo_cap_is_one_plus_epsilon_high():
    _, grad, m = run(LossSettings(objective="cispo", loss_type="bnpo", epsilon_high=4.0), CISPO_LP,
                     torch.ones(2, 2), CISPO_ADV, old=torch.zeros(2, 2, dtype=F64))
    close(grad, [[-0.5, -0.125], [0.5, 0.125]])  # cap 5: weights 2 and 0.5 unchanged
    assert m["clip_ratio/high_mean"] == 0.0


def test_sapo_soft_gate_by_hand():
    lp = t64([[math.log(1.5), math.log(0.5)], [math.log(1.5), 0.0]])
    adv = t64([1.0, -1.0])
    loss, grad, m = run(LossSettings(objective="sapo", loss_type="bnpo"), lp, torch.ones(2, 2), adv,
                        old=torch.zeros(2, 2, dtype=F64))
    sig = 1 / (1 + math.exp(-0.5))  # sigmoid(1 * (1.5 - 1)) = 0.62246; sigmoid(-0.5) = 1 - sig
    sig_neg = 1 / (1 + math.exp(-1.05 * 0.5))  # tau_neg 1.05, rho 1.5
    # row 1 (A = +1, tau 1): -4 sig - 4 (1 - sig) = -4.  row 2 (A = -1, tau 1.05): 4/1.05 (sig_neg + 1/2)
    assert loss == pytest.approx((-4.0 + 4 / 1.05 * (sig_neg + 0.5)) / 4, abs=1e-12)
    # d/d lp = -(A / 4) * 4 sigma (1 - sigma) * rho
    g = sig * (1 - sig)
    close(grad, [[-g * 1.5, -g * 0.5], [sig_neg * (1 - sig_neg) * 1.5, 0.25]])
    assert m["clip_ratio/region_mean"] == 0.0
    warmer = run(LossSettings(objective="sapo", loss_type="bnpo", sapo_temperature_pos=4.0), lp, torch.ones(2, 2),
                 adv, old=torch.zeros(2, 2, dtype=F64))
    s4 = 1 / (1 + math.exp(-4 * 0.5))  # a higher temperature gates rho = 1.5 harder: 4 s (1 - s) * 1.5 / 4
    assert warmer[1][0, 0].item() == pytest.approx(-s4 * (1 - s4) * 1.5, abs=1e-12)


def test_bias_corrected_kl_is_k3_times_rho_and_off_by_default():
    lp, old, ref = t64([[LN2]]), t64([[0.0]]), t64([[0.0]])  # rho = 2; k3 = 1/2 + ln2 - 1
    k3 = 0.5 + LN2 - 1
    zero = t64([0.0])  # no policy term: the loss is the KL term alone
    loss, grad, m = run(LossSettings(beta=1.0, loss_type="bnpo"), lp, t64([[1]]), zero, old=old, ref=ref)
    assert loss == pytest.approx(k3) and m["kl"] == pytest.approx(k3)
    close(grad, [[0.5]])  # d k3 / d lp = 1 - exp(lr - lp)
    loss, grad, m = run(LossSettings(beta=1.0, loss_type="bnpo", use_bias_correction_kl=True), lp, t64([[1]]), zero,
                        old=old, ref=ref)
    assert loss == pytest.approx(2 * k3) and m["kl"] == pytest.approx(2 * k3)
    close(grad, [[2 * LN2]])  # d (rho k3) / d lp = rho (lp - lr): the unbiased reverse-KL gradient
    # on-policy (old_logps None, rho == 1): the value is unchanged but the ratio's gradient is not (as TRL says)
    on = run(LossSettings(beta=1.0, loss_type="bnpo", use_bias_correction_kl=True), lp, t64([[1]]), zero, ref=ref)
    assert on[0] == pytest.approx(k3)
    close(on[1], [[LN2]])  # k3 + (1 - exp(lr - lp)) = lp - lr


def test_opd_is_token_level_only():
    one = torch.ones(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="'opd' weighs per-token rewards"):
        compute_policy_loss(PolicyLossInputs(one, one, teacher_logps=one),
                            LossSettings(objective="opd", importance_sampling_level="sequence"))
