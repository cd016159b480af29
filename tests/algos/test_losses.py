"""Policy losses against hand-worked numbers, a loop reference, and gradient-accumulation invariance."""

from __future__ import annotations

import math

import pytest
import torch

from timegrpo.algos.aggregate import AGGREGATIONS, dapo_tokens_per_micro_batch
from timegrpo.algos.losses import OBJECTIVES, LossSettings, PolicyLossInputs, compute_policy_loss

F64 = torch.float64


def assert_close(got, expected):
    torch.testing.assert_close(got, torch.tensor(expected, dtype=F64), rtol=1e-12, atol=1e-12)


def run(settings, logps, mask, advantages=None, *, old=None, ref=None, teacher=None, tokens=None):
    """Loss, d loss / d logps and metrics for one micro-batch."""
    lp = logps.clone().to(F64).requires_grad_(True)
    inputs = PolicyLossInputs(lp, mask.to(F64), advantages, old, ref, teacher)
    out = compute_policy_loss(inputs, settings, tokens_per_micro_batch=tokens)
    out.loss.backward()
    return out.loss.item(), lp.grad, {k: v.item() for k, v in out.metrics.items()}


# Two completions of 4 and 1 tokens (padding log-probs are garbage: they must not matter), A = [+1, -1].
MASK = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]], dtype=F64)
LOGPS = torch.tensor([[-0.3, -1.2, -0.7, -2.0], [-0.4, 9.0, 9.0, 9.0]], dtype=F64)
ADV = torch.tensor([1.0, -1.0], dtype=F64)


def test_token_mean_and_sequence_mean_differ_as_they_should():
    # rho == 1 (old = logps.detach()), so each token's loss is -A: four tokens of -1, one token of +1.
    loss, grad, _ = run(LossSettings(loss_type="grpo"), LOGPS, MASK, ADV)
    assert loss == pytest.approx((-4 / 4 + 1 / 1) / 2)  # sequence-mean of token-means: 0
    assert_close(grad, [[-1 / 8] * 4, [1 / 2, 0, 0, 0]])  # -A / (n_i * N)
    loss, grad, _ = run(LossSettings(loss_type="bnpo"), LOGPS, MASK, ADV)
    assert loss == pytest.approx((-4 + 1) / 5)  # token-mean: -0.6
    assert_close(grad, [[-1 / 5] * 4, [1 / 5, 0, 0, 0]])  # -A / total tokens
    loss_dapo, grad_dapo, _ = run(LossSettings(loss_type="dapo"), LOGPS, MASK, ADV)
    assert loss_dapo == pytest.approx(-0.6) and torch.allclose(grad_dapo, grad)


def test_dr_grpo_divides_by_n_times_max_completion_length():
    loss, grad, _ = run(LossSettings(loss_type="dr_grpo", max_completion_length=4), LOGPS, MASK, ADV)
    assert loss == pytest.approx(-3 / (2 * 4))
    assert_close(grad, [[-1 / 8] * 4, [1 / 8, 0, 0, 0]])
    loss, _, _ = run(LossSettings(loss_type="dr_grpo", max_completion_length=200), LOGPS, MASK, ADV)
    assert loss == pytest.approx(-3 / 400)


# Clipping: seq 1 (A=+1) has rho [1.5, 0.5], seq 2 (A=-1) has rho [0.7, 1.5]; epsilon 0.2.
RHO = torch.tensor([[1.5, 0.5], [0.7, 1.5]], dtype=F64)
OLD = torch.tensor([[-1.0, -2.0], [-0.5, -1.5]], dtype=F64)


def test_clipping_zeroes_the_gradient_of_clipped_tokens_when_rho_differs_from_one():
    lp = OLD + torch.log(RHO)
    loss, grad, m = run(LossSettings(loss_type="bnpo"), lp, torch.ones(2, 2), ADV, old=OLD)
    # per token: -min(1.5, 1.2) = -1.2; -min(0.5, 0.8) = -0.5; -min(-0.7, -0.8) = 0.8; -min(-1.5, -1.2) = 1.5
    assert loss == pytest.approx((-1.2 - 0.5 + 0.8 + 1.5) / 4)
    # clipped tokens (rho 1.5 with A > 0, rho 0.7 with A < 0) get no gradient; the others -rho * A / 4.
    assert_close(grad, [[0.0, -0.5 / 4], [0.0, 1.5 / 4]])
    assert m["clip_ratio/high_mean"] == 0.25 and m["clip_ratio/low_mean"] == 0.25
    assert m["clip_ratio/region_mean"] == 0.5
    assert (m["ratio/mean"], m["ratio/min"], m["ratio/max"]) == pytest.approx((1.05, 0.5, 1.5))


def test_with_one_iteration_rho_is_one_and_nothing_is_clipped():
    lp = OLD + torch.log(RHO)
    loss, grad, m = run(LossSettings(loss_type="bnpo"), lp, torch.ones(2, 2), ADV)  # old=None
    assert loss == pytest.approx(0.0)
    assert_close(grad, [[-0.25, -0.25], [0.25, 0.25]])  # plain policy gradient -A / 4
    assert m["clip_ratio/region_mean"] == 0.0 and m["ratio/min"] == m["ratio/max"] == 1.0


def test_epsilon_high_widens_only_the_upper_clip():
    lp = torch.log(torch.tensor([[1.25]], dtype=F64))
    old, adv, one = torch.zeros(1, 1, dtype=F64), torch.ones(1, dtype=F64), torch.ones(1, 1)
    loss, grad, _ = run(LossSettings(loss_type="dapo"), lp, one, adv, old=old)
    assert (loss, grad.item()) == pytest.approx((-1.2, 0.0))
    loss, grad, _ = run(LossSettings(loss_type="dapo", epsilon_high=0.28), lp, one, adv, old=old)
    assert (loss, grad.item()) == pytest.approx((-1.25, -1.25))


def test_beta_adds_k3_per_token():
    lp = torch.tensor([[-1.0, -2.0]], dtype=F64)
    ref = torch.tensor([[-2.0, -1.0]], dtype=F64)
    settings = LossSettings(loss_type="bnpo", beta=0.04)
    loss, grad, m = run(settings, lp, torch.ones(1, 2), torch.zeros(1, dtype=F64), ref=ref)
    k3 = [math.exp(-1), math.e - 2]
    assert loss == pytest.approx(0.04 * sum(k3) / 2)
    assert m["kl"] == pytest.approx(sum(k3) / 2)
    assert_close(grad, [[0.04 * (1 - math.exp(-1)) / 2, 0.04 * (1 - math.e) / 2]])
    _, _, m = run(LossSettings(kl_estimator="k1"), lp, torch.ones(1, 2), torch.zeros(1, dtype=F64), ref=ref)
    assert m["kl"] == 0.0  # logged when a reference is given, even with beta 0: k1 = (1 - 1) / 2


def test_token_level_advantages_broadcast_like_sequence_ones():
    a, grad_seq, _ = run(LossSettings(loss_type="grpo"), LOGPS, MASK, ADV)
    b, grad_tok, _ = run(LossSettings(loss_type="grpo"), LOGPS, MASK, ADV.view(2, 1).expand(2, 4))
    assert a == b and torch.equal(grad_seq, grad_tok)


def test_opd_loss_is_minus_token_mean_of_teacher_minus_old():
    lp = torch.tensor([[-1.0, -2.0]], dtype=F64)
    teacher = torch.tensor([[-0.5, -3.0]], dtype=F64)  # r = [0.5, -1.0]
    settings = LossSettings(objective="opd", loss_type="bnpo")
    loss, grad, m = run(settings, lp, torch.ones(1, 2), teacher=teacher)
    assert loss == pytest.approx(-(0.5 - 1.0) / 2)
    assert_close(grad, [[-0.5 / 2, 1.0 / 2]])  # -r_t / N_tokens: r is detached
    assert m["opd/reward_mean"] == pytest.approx(-0.25) and m["clip_ratio/region_mean"] == 0.0
    clamped = LossSettings(objective="opd", loss_type="bnpo", opd_reward_clamp=0.6)
    loss, _, _ = run(clamped, lp, torch.ones(1, 2), teacher=teacher)
    assert loss == pytest.approx(-(0.5 - 0.6) / 2)


def test_opd_ratio_clip_is_off_by_default_and_clips_when_set():
    old = torch.tensor([[-1.0]], dtype=F64)
    lp = old + math.log(1.5)
    teacher = torch.tensor([[0.0]], dtype=F64)  # r = 1 > 0, rho = 1.5
    settings = LossSettings(objective="opd", loss_type="bnpo")
    loss, grad, _ = run(settings, lp, torch.ones(1, 1), old=old, teacher=teacher)
    assert (loss, grad.item()) == pytest.approx((-1.5, -1.5))
    clipped = LossSettings(objective="opd", loss_type="bnpo", opd_ratio_clip=0.2)
    loss, grad, m = run(clipped, lp, torch.ones(1, 1), old=old, teacher=teacher)
    assert (loss, grad.item(), m["clip_ratio/high_mean"]) == pytest.approx((-1.2, 0.0, 1.0))


def loop_loss(loss_type, lp, old, ref, adv, mask, beta, eps, eps_high, max_len):
    """Reference implementation with Python loops over tokens (verl style)."""
    n, t = len(lp), len(lp[0])
    per_seq, total, tokens = [], 0.0, 0.0
    for i in range(n):
        seq, count = 0.0, 0.0
        for j in range(t):
            if mask[i][j] == 0:
                continue
            rho = math.exp(lp[i][j] - old[i][j])
            clipped = min(max(rho, 1 - eps), 1 + eps_high)
            d = ref[i][j] - lp[i][j]
            token = -min(rho * adv[i], clipped * adv[i]) + beta * (math.exp(d) - d - 1)
            seq, count = seq + token, count + 1
        per_seq.append(seq / max(count, 1))
        total, tokens = total + seq, tokens + count
    return {
        "grpo": sum(per_seq) / n,
        "bnpo": total / max(tokens, 1),
        "dapo": total / max(tokens, 1),
        "dr_grpo": total / (n * max_len),
    }[loss_type]


def random_batch(n, t, seed, lengths=None):
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or torch.randint(0, t + 1, (n,), generator=g).tolist()
    mask = (torch.arange(t).view(1, -1) < torch.tensor(lengths).view(-1, 1)).to(F64)
    lp = -torch.rand(n, t, generator=g, dtype=F64) * 3
    old = lp + (torch.rand(n, t, generator=g, dtype=F64) - 0.5) * 0.8  # rho in about [0.67, 1.5]
    ref = lp + (torch.rand(n, t, generator=g, dtype=F64) - 0.5)
    adv = torch.randn(n, generator=g, dtype=F64)
    return lp, old, ref, adv, mask


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo"])
def test_vectorised_loss_matches_the_loop_reference(loss_type):
    lp, old, ref, adv, mask = random_batch(6, 9, seed=3)
    settings = LossSettings(loss_type=loss_type, beta=0.04, epsilon_high=0.28, max_completion_length=9)
    got, _, m = run(settings, lp, mask, adv, old=old, ref=ref)
    want = loop_loss(loss_type, lp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist(),
                     0.04, 0.2, 0.28, 9)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert 0 < m["clip_ratio/region_mean"] < 1  # the example does exercise clipping


LENGTHS = [6, 1, 3, 5, 2, 6, 4, 1]  # micro-batch 1 has 15 tokens, micro-batch 2 has 13


def micro_batches(lp, old, ref, adv, mask, size):
    return [(lp[i:i + size], old[i:i + size], ref[i:i + size], adv[i:i + size], mask[i:i + size])
            for i in range(0, lp.shape[0], size)]


def accumulated(settings, batch, size, num_processes=1):
    """Mean of the micro-batch losses (what Accelerate's accumulation + DDP averaging optimise) and its gradient."""
    lp_full = batch[0].clone().requires_grad_(True)
    parts = micro_batches(lp_full, *batch[1:], size)
    steps = len(parts) // num_processes
    tokens = dapo_tokens_per_micro_batch(batch[4].sum().item(), num_processes, steps)
    losses = [compute_policy_loss(PolicyLossInputs(lp, m, a, o, r), settings, tokens_per_micro_batch=tokens).loss
              for lp, o, r, a, m in parts]
    step = torch.stack(losses).mean()
    step.backward()
    return step.item(), lp_full.grad, [x.item() for x in losses]


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
@pytest.mark.parametrize("size,num_processes", [(4, 1), (2, 2)])
def test_batch_8_equals_accumulated_micro_batches(loss_type, size, num_processes):
    lp, old, ref, adv, mask = random_batch(8, 6, seed=5, lengths=LENGTHS)
    settings = LossSettings(loss_type=loss_type, beta=0.04, max_completion_length=6)
    full, grad_full, _ = run(settings, lp, mask, adv, old=old, ref=ref)
    step, grad_step, _ = accumulated(settings, (lp, old, ref, adv, mask), size, num_processes)
    assert step == pytest.approx(full, rel=1e-12)
    assert torch.allclose(grad_step, grad_full, rtol=1e-12, atol=1e-15)


def test_bnpo_is_local_token_mean_and_dapo_is_the_exact_weighting():
    # rho == 1 and no KL: each token's loss is -A. Micro-batch 1 (15 tokens) has A = +1, micro-batch 2 (13) A = -1.
    adv = torch.tensor([1.0] * 4 + [-1.0] * 4, dtype=F64)
    lp, _, _, _, mask = random_batch(8, 6, seed=7, lengths=LENGTHS)
    full, _, _ = run(LossSettings(loss_type="bnpo"), lp, mask, adv)
    assert full == pytest.approx((-15 + 13) / 28)  # token-mean of the whole batch: -1/14
    _, _, (b1, b2) = accumulated(LossSettings(loss_type="bnpo"), (lp, lp, lp, adv, mask), 4)
    assert (b1, b2) == pytest.approx((-1.0, 1.0))
    assert (b1 + b2) / 2 == pytest.approx(0.0)  # TRL bnpo under accumulation: not -1/14
    assert 15 / 28 * b1 + 13 / 28 * b2 == pytest.approx(full)  # the properly weighted combination
    step, _, (d1, d2) = accumulated(LossSettings(loss_type="dapo"), (lp, lp, lp, adv, mask), 4)
    assert (d1, d2) == pytest.approx((-15 / 14, 13 / 14))  # S_k / (28 tokens / 2 micro-batches)
    assert step == pytest.approx(full)


def test_errors_are_clear():
    one = torch.ones(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="needs ref_logps"):
        run(LossSettings(beta=0.1), one, one, torch.ones(1))
    with pytest.raises(ValueError, match="needs teacher_logps"):
        run(LossSettings(objective="opd"), one, one)
    with pytest.raises(ValueError, match="needs advantages"):
        run(LossSettings(), one, one)
    with pytest.raises(ValueError, match="max_completion_length"):
        run(LossSettings(loss_type="dr_grpo"), one, one, torch.ones(1))
    with pytest.raises(KeyError, match="known: bnpo, dapo, dr_grpo, grpo"):
        run(LossSettings(loss_type="sapo"), one, one, torch.ones(1))
    with pytest.raises(ValueError, match="do not match logps"):
        run(LossSettings(), one, one, torch.ones(3))
    with pytest.raises(ValueError, match=r"must both be \(N, T\)"):
        run(LossSettings(), one, torch.ones(1, 3), torch.ones(1))
    assert OBJECTIVES.names() == ["cispo", "clipped", "gspo", "opd", "sapo"] and len(AGGREGATIONS) == 4


def test_half_precision_logps_are_computed_on_in_float32():
    lp = LOGPS.to(torch.bfloat16).requires_grad_(True)
    out = compute_policy_loss(PolicyLossInputs(lp, MASK.bool(), ADV.to(torch.bfloat16)), LossSettings(loss_type="bnpo"))
    assert out.loss.dtype == torch.float32 and out.loss.item() == pytest.approx(-0.6)
    out.loss.backward()
    assert lp.grad.dtype == torch.bfloat16 and lp.grad[0, 0].item() == pytest.approx(-0.2, abs=1e-3)
