"""Policy losses: a per-token objective, plus ``beta * KL_t``, aggregated by ``loss_type``.

Entry point for the trainer: :func:`compute_policy_loss` ``(PolicyLossInputs, LossSettings) -> PolicyLossOutput``.
It looks up ``settings.objective`` in :data:`OBJECTIVES`, ``settings.kl_estimator`` in
:data:`timegrpo.algos.kl.KL_ESTIMATORS` and ``settings.loss_type`` in
:data:`timegrpo.algos.aggregate.AGGREGATIONS`; it never branches on a name.

Shapes: ``N = B*G`` completions, ``T`` completion positions. ``logps``, ``old_logps``, ``ref_logps``,
``teacher_logps`` and ``mask`` are ``(N, T)``: the log-prob of each sampled completion token under the current
policy (with grad), the policy that sampled it, the reference, and the teacher; ``advantages`` is ``(N,)`` (one per
completion, broadcast over tokens) or ``(N, T)``.

Objectives (per token, before the mask):

* ``clipped`` (GRPO / PPO-clip, Time-R1, TRL's grpo/bnpo/dr_grpo/dapo):
  ``-min(rho * A, clip(rho, 1 - epsilon, 1 + epsilon_high) * A)`` with ``rho = exp(lp - lp_old)``.
  With ``num_iterations == 1`` the trainer passes ``old_logps=None``; then ``lp_old = lp.detach()``, ``rho == 1``,
  nothing is clipped and the gradient is exactly the policy gradient ``-A * grad(lp)``. Clipping only acts when
  the same rollouts are reused (``num_iterations > 1``) and ``rho != 1``.
* ``opd`` (Video-OPD on-policy distillation): ``-r_t * rho`` with the detached per-token reward
  ``r_t = lp_teacher - lp_old`` (so ``-(1/N_tokens) sum_t r_t exp(lp_t - lp_old_t)`` under a token-mean
  ``loss_type``; its expectation is the reverse KL(student || teacher) up to a constant). Off by default, as in
  the paper: ``opd_reward_clamp`` clamps ``r_t`` to ``[-c, c]`` (paper's option: 5) and ``opd_ratio_clip`` applies
  PPO clipping with that epsilon and ``A = r_t`` (paper's option: 0.2).

``beta * KL_t`` is added per token when ``beta != 0`` (``ref_logps`` then required); KL is measured for the
metrics whenever ``ref_logps`` is given.

Metrics (0-d detached tensors, means over unmasked tokens of this micro-batch; names as TRL where they exist):
``policy_loss``, ``kl`` (when ``ref_logps`` given), ``clip_ratio/low_mean``, ``clip_ratio/high_mean``,
``clip_ratio/region_mean``, ``ratio/mean``, ``ratio/min``, ``ratio/max``, ``num_tokens`` and, for ``opd``,
``opd/reward_mean`` (the mean ``r_t``: minus the estimated reverse KL to the teacher).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from timegrpo.algos.aggregate import AGGREGATIONS
from timegrpo.algos.kl import KL_ESTIMATORS
from timegrpo.config.recipe import RecipeConfig
from timegrpo.registry import Registry


@dataclass
class PolicyLossInputs:
    """Tensors for one micro-batch; see the module docstring for shapes."""

    logps: Tensor
    mask: Tensor
    advantages: Tensor | None = None
    old_logps: Tensor | None = None
    ref_logps: Tensor | None = None
    teacher_logps: Tensor | None = None


@dataclass(frozen=True)
class LossSettings:
    """Loss hyper-parameters (the config fields of the same names, ``train.*``)."""

    objective: str = "clipped"
    loss_type: str = "dapo"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.0
    kl_estimator: str = "k3"
    max_completion_length: int | None = None
    opd_ratio_clip: float | None = None
    opd_reward_clamp: float | None = None

    @classmethod
    def from_recipe(cls, recipe: RecipeConfig) -> LossSettings:
        """The settings of a recipe: its ``method``'s objective and the ``train`` fields of the same names."""
        t = recipe.train
        return cls(objective=recipe.objective, loss_type=t.loss_type, epsilon=t.epsilon, epsilon_high=t.epsilon_high,
                   beta=t.beta, kl_estimator=t.kl_estimator, max_completion_length=t.max_completion_length,
                   opd_ratio_clip=t.opd_ratio_clip, opd_reward_clamp=t.opd_reward_clamp)


@dataclass
class ObjectiveTerms:
    """What an objective returns: the per-token loss ``(N, T)``, the ratio ``rho`` ``(N, T)``, boolean masks
    ``(N, T)`` of tokens clipped at the low / high side, and extra ``(N, T)`` tensors to log as token means."""

    per_token_loss: Tensor
    ratio: Tensor
    low_clipped: Tensor
    high_clipped: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class PolicyLossOutput:
    """``loss``: the scalar to backpropagate (see :mod:`timegrpo.algos.aggregate` for accumulation);
    ``metrics``: 0-d detached tensors."""

    loss: Tensor
    metrics: dict[str, Tensor]


ObjectiveFn = Callable[[PolicyLossInputs, LossSettings], ObjectiveTerms]

#: Per-token objectives by name (``clipped`` for GRPO, ``opd`` for on-policy distillation).
OBJECTIVES: Registry[ObjectiveFn] = Registry("policy objective")


def _old_logps(inputs: PolicyLossInputs) -> Tensor:
    return inputs.logps.detach() if inputs.old_logps is None else inputs.old_logps.detach()


def _token_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    """``(N,)`` or ``(N, T)`` advantages -> ``(N, T)`` (detached)."""
    adv = advantages.detach().to(like.dtype)
    if adv.dim() == 1:
        adv = adv.unsqueeze(1)
    if adv.shape[0] != like.shape[0] or adv.dim() != 2 or adv.shape[1] not in (1, like.shape[1]):
        raise ValueError(f"advantages of shape {tuple(advantages.shape)} do not match logps {tuple(like.shape)}")
    return adv.expand_as(like)


def clipped_surrogate(
    logps: Tensor, old_logps: Tensor, advantages: Tensor, eps_low: float, eps_high: float
) -> ObjectiveTerms:
    """``-min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)`` per token, all ``(N, T)``.

    >>> lp = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))
    >>> t = clipped_surrogate(lp, torch.zeros(1, 3), torch.ones(1, 3), 0.2, 0.2)
    >>> t.per_token_loss, t.high_clipped
    (tensor([[-1.2000, -0.5000, -1.0000]]), tensor([[ True, False, False]]))
    """
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    low = (ratio < 1 - eps_low) & (advantages < 0)
    high = (ratio > 1 + eps_high) & (advantages > 0)
    return ObjectiveTerms(per_token, ratio, low, high)


@OBJECTIVES.register("clipped")
def clipped_objective(inputs: PolicyLossInputs, settings: LossSettings) -> ObjectiveTerms:
    """GRPO's PPO-clip objective with ``epsilon`` below and ``epsilon_high`` (default ``epsilon``) above."""
    if inputs.advantages is None:
        raise ValueError("objective 'clipped' needs advantages (N,) or (N, T)")
    eps_high = settings.epsilon if settings.epsilon_high is None else settings.epsilon_high
    adv = _token_advantages(inputs.advantages, inputs.logps)
    return clipped_surrogate(inputs.logps, _old_logps(inputs), adv, settings.epsilon, eps_high)


@OBJECTIVES.register("opd")
def opd_objective(inputs: PolicyLossInputs, settings: LossSettings) -> ObjectiveTerms:
    """Video-OPD: ``-r_t * rho`` with ``r_t = (lp_teacher - lp_old).detach()``; optional clamp and ratio clip."""
    if inputs.teacher_logps is None:
        raise ValueError("objective 'opd' needs teacher_logps (N, T): the teacher's log-probs of the student's tokens")
    old = _old_logps(inputs)
    reward = inputs.teacher_logps.detach() - old
    if settings.opd_reward_clamp is not None:
        reward = reward.clamp(-settings.opd_reward_clamp, settings.opd_reward_clamp)
    if settings.opd_ratio_clip is not None:
        terms = clipped_surrogate(inputs.logps, old, reward, settings.opd_ratio_clip, settings.opd_ratio_clip)
    else:
        ratio = torch.exp(inputs.logps - old)
        none = torch.zeros_like(ratio, dtype=torch.bool)
        terms = ObjectiveTerms(-reward * ratio, ratio, none, none)
    terms.extras["opd/reward_mean"] = reward
    return terms


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x.detach().to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1.0)


def _masked_extreme(x: Tensor, mask: Tensor, largest: bool) -> Tensor:
    keep = mask > 0
    if not bool(keep.any()):
        return torch.tensor(float("nan"), device=x.device)
    values = x.detach()[keep]
    return values.max() if largest else values.min()


def _metrics(
    terms: ObjectiveTerms, kl: Tensor | None, mask: Tensor, loss: Tensor
) -> dict[str, Tensor]:
    low, high = terms.low_clipped.float(), terms.high_clipped.float()
    metrics = {
        "policy_loss": loss.detach(),
        "clip_ratio/low_mean": _masked_mean(low, mask),
        "clip_ratio/high_mean": _masked_mean(high, mask),
        "clip_ratio/region_mean": _masked_mean(torch.maximum(low, high), mask),
        "ratio/mean": _masked_mean(terms.ratio, mask),
        "ratio/min": _masked_extreme(terms.ratio, mask, largest=False),
        "ratio/max": _masked_extreme(terms.ratio, mask, largest=True),
        "num_tokens": mask.sum().detach(),
    }
    if kl is not None:
        metrics["kl"] = _masked_mean(kl, mask)
    for name, value in terms.extras.items():
        metrics[name] = _masked_mean(value, mask)
    return metrics


def _upcast(x: Tensor | None) -> Tensor | None:
    """bf16/fp16 -> float32 (the exp, the clip and the sums need it); float32/float64 unchanged."""
    return x.float() if x is not None and x.dtype in (torch.bfloat16, torch.float16) else x


def compute_policy_loss(
    inputs: PolicyLossInputs, settings: LossSettings, *, tokens_per_micro_batch: float | None = None
) -> PolicyLossOutput:
    """The micro-batch loss: objective + ``beta * KL_t``, aggregated by ``settings.loss_type``.

    ``tokens_per_micro_batch`` is the ``dapo`` normaliser (see
    :func:`timegrpo.algos.aggregate.dapo_tokens_per_micro_batch`); other loss types ignore it. Half-precision
    log-probs are computed on in float32 (gradients still reach them).
    """
    inputs = replace(inputs, **{f.name: _upcast(getattr(inputs, f.name)) for f in fields(inputs)})
    if inputs.logps.dim() != 2 or inputs.mask.shape != inputs.logps.shape:
        raise ValueError(
            f"logps and mask must both be (N, T); got {tuple(inputs.logps.shape)} and {tuple(inputs.mask.shape)}"
        )
    mask = inputs.mask.to(inputs.logps.dtype)
    terms = OBJECTIVES.get(settings.objective)(inputs, settings)
    per_token = terms.per_token_loss
    kl = None
    if inputs.ref_logps is not None:
        kl = KL_ESTIMATORS.get(settings.kl_estimator)(inputs.logps, inputs.ref_logps.detach())
    if settings.beta != 0.0:
        if kl is None:
            raise ValueError(f"beta={settings.beta} needs ref_logps (N, T) from the reference model")
        per_token = per_token + settings.beta * kl
    loss = AGGREGATIONS.get(settings.loss_type)(
        per_token,
        mask,
        max_completion_length=settings.max_completion_length,
        tokens_per_micro_batch=tokens_per_micro_batch,
    )
    return PolicyLossOutput(loss, _metrics(terms, kl, mask, loss))
