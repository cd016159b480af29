"""Policy losses: a per-token objective, plus ``beta * KL_t``, aggregated by ``loss_type``.

Entry point for the trainer: :func:`compute_policy_loss` ``(PolicyLossInputs, LossSettings) -> PolicyLossOutput``.
It looks up ``settings.objective`` in :data:`OBJECTIVES`, ``settings.kl_estimator`` in
:data:`timegrpo.algos.kl.KL_ESTIMATORS` and ``settings.loss_type`` in
:data:`timegrpo.algos.aggregate.AGGREGATIONS`; it never branches on a name.

Shapes: ``N = B*G`` completions, ``T`` completion positions. ``logps``, ``old_logps``, ``ref_logps``,
``teacher_logps`` and ``mask`` are ``(N, T)``: the log-prob of each sampled completion token under the current
policy (with grad), the policy that sampled it, the reference, and the teacher; ``advantages`` is ``(N,)`` (one per
completion, broadcast over tokens) or ``(N, T)``.

Objectives (per token, before the mask). ``rho`` is the importance weight at ``importance_sampling_level``
(:mod:`timegrpo.algos.importance`: ``token`` ``rho_t = exp(lp_t - lp_old_t)``, or ``sequence`` GSPO's
``s_i = exp(mean_t(lp_t - lp_old_t))`` broadcast to the completion's tokens); each objective has its own default
level. With ``num_iterations == 1`` the trainer passes ``old_logps=None``; then ``lp_old = lp.detach()``,
``rho == 1`` at either level, nothing is clipped and every objective below but ``opd`` gives exactly the policy
gradient ``-A * grad(lp)``: they differ only once the same rollouts are reused (``num_iterations > 1``).

* ``clipped`` (GRPO / PPO-clip, Time-R1, TRL's grpo/bnpo/dr_grpo/dapo; level ``token``):
  ``-min(rho * A, clip(rho, 1 - epsilon, 1 + epsilon_high) * A)``. With ``importance_sampling_level: sequence``
  it is TRL's GSPO composition (any ``loss_type``).
* ``gspo`` (GSPO, Zheng et al. 2025, arXiv 2507.18071): ``clipped`` at level ``sequence``,
  ``-min(s_i A_i, clip(s_i, 1 - epsilon, 1 + epsilon_high) A_i)`` on every token of completion ``i``; the paper
  clips at 3e-4 / 4e-4 and aggregates as ``loss_type: grpo`` (``recipes/gspo_qwen2_5_vl_7b.yaml``). Asking it
  for level ``token`` is an error.
* ``cispo`` (CISPO, MiniMax-M1, arXiv 2506.13585, eq. 4-5): REINFORCE with a truncated, stop-gradient weight,
  ``-sg(min(rho, 1 + epsilon_high)) * A * lp``; no token is ever dropped from the gradient (the weight is capped,
  the token still counts). No lower bound: the paper's own setting ("we did not impose a lower bound ... by
  setting eps_low to a large value") and TRL's. Departure in naming only: TRL caps at ``epsilon_high`` itself
  (its CISPO ``epsilon_high`` is ScaleRL's ``eps_max``, recommended 5.0), we cap at ``1 + epsilon_high`` as the
  paper writes it and as our ``clipped`` reads ``epsilon_high`` (TRL's 5.0 is our 4.0). Token-mean in the paper
  and TRL: ``loss_type: dapo``. ``clip_ratio/high_mean`` counts the tokens whose weight was capped, whatever the
  sign of ``A`` (verl's clipfrac; TRL's ``cispo_clip_ratio`` counts only ``A > 0``).
* ``sapo`` (SAPO, Gao et al. 2025, arXiv 2511.20347, as TRL 1.16's ``loss_type="sapo"``): a soft gate in place
  of the hard clip, ``-f(rho) * A`` with ``f(rho) = sigmoid(tau * (rho - 1)) * 4 / tau``, ``tau =
  sapo_temperature_pos`` where ``A > 0`` and ``sapo_temperature_neg`` elsewhere (TRL and the paper: 1.0 / 1.05).
  ``f(1) = 2 / tau`` and ``f'(1) = 1``, so at ``rho = 1`` its gradient is the policy gradient; away from 1 the
  token's gradient weight ``4 sigma (1 - sigma) rho`` decays smoothly instead of dropping to 0. The paper and TRL
  aggregate as ``loss_type: grpo``. No token is clipped: the clip-ratio metrics are 0.
* ``opd`` (Video-OPD on-policy distillation; level ``token`` only): ``-r_t * rho`` with the detached per-token
  reward ``r_t = lp_teacher - lp_old`` (so ``-(1/N_tokens) sum_t r_t exp(lp_t - lp_old_t)`` under a token-mean
  ``loss_type``; its expectation is the reverse KL(student || teacher) up to a constant). Off by default, as in
  the paper: ``opd_reward_clamp`` clamps ``r_t`` to ``[-c, c]`` (paper's option: 5) and ``opd_ratio_clip`` applies
  PPO clipping with that epsilon and ``A = r_t`` (paper's option: 0.2).

``beta * KL_t`` is added per token when ``beta != 0`` (``ref_logps`` then required); KL is measured for the
metrics whenever ``ref_logps`` is given. ``use_bias_correction_kl`` multiplies ``KL_t`` by the objective's ``rho``
(with its gradient) before both: TRL 1.16's switch of the same name (on by default there; DeepSeek-V3.2,
arXiv 2512.02556), which makes the KL gradient the unbiased reverse-KL gradient ``rho * (lp - lr)`` (for k3).
**Off by default here**: the SPEC and Time-R1 use plain k3. The ratio is differentiable, so the switch changes
the gradient even on-policy, where ``rho == 1`` and the value is unchanged (``grad = lp - lr`` instead of
``1 - exp(lr - lp)``).

Metrics (0-d detached tensors, means over unmasked tokens of this micro-batch; names as TRL where they exist):
``policy_loss``, ``kl`` (when ``ref_logps`` given; times ``rho`` under ``use_bias_correction_kl``, as TRL logs it),
``clip_ratio/low_mean``, ``clip_ratio/high_mean``,
``clip_ratio/region_mean``, ``ratio/mean``, ``ratio/min``, ``ratio/max``, ``num_tokens`` and, for ``opd``,
``opd/reward_mean`` (the mean ``r_t``: minus the estimated reverse KL to the teacher). At level ``sequence`` the
ratio and clip metrics are token-weighted means of the per-completion values (TRL averages them per completion).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from timegrpo.algos.aggregate import AGGREGATIONS
from timegrpo.algos.importance import IMPORTANCE_LEVELS
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
    importance_sampling_level: str | None = None  # None: the objective's own level
    use_bias_correction_kl: bool = False
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05

    @classmethod
    def from_recipe(cls, recipe: RecipeConfig) -> LossSettings:
        """The settings of a recipe: its ``method``'s objective and the ``train`` fields of the same names."""
        t = recipe.train
        return cls(objective=recipe.objective, loss_type=t.loss_type, epsilon=t.epsilon, epsilon_high=t.epsilon_high,
                   beta=t.beta, kl_estimator=t.kl_estimator, max_completion_length=t.max_completion_length,
                   opd_ratio_clip=t.opd_ratio_clip, opd_reward_clamp=t.opd_reward_clamp,
                   importance_sampling_level=t.importance_sampling_level,
                   use_bias_correction_kl=t.use_bias_correction_kl, sapo_temperature_pos=t.sapo_temperature_pos,
                   sapo_temperature_neg=t.sapo_temperature_neg)


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

#: Per-token objectives by name (``clipped`` GRPO, ``gspo``, ``cispo``, ``sapo``, ``opd`` on-policy distillation).
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


def importance_ratio(inputs: PolicyLossInputs, settings: LossSettings, default_level: str) -> Tensor:
    """``rho`` ``(N, T)`` at ``settings.importance_sampling_level`` (``default_level`` when None), with grad."""
    level = settings.importance_sampling_level or default_level
    log_ratio = inputs.logps - _old_logps(inputs)
    return torch.exp(IMPORTANCE_LEVELS.get(level)(log_ratio, inputs.mask))


def clipped_surrogate(
    logps: Tensor, old_logps: Tensor, advantages: Tensor, eps_low: float, eps_high: float
) -> ObjectiveTerms:
    """``-min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)`` per token with ``rho = exp(lp - lp_old)``,
    all ``(N, T)``.

    >>> lp = torch.log(torch.tensor([[1.5, 0.5, 1.0]]))
    >>> t = clipped_surrogate(lp, torch.zeros(1, 3), torch.ones(1, 3), 0.2, 0.2)
    >>> t.per_token_loss, t.high_clipped
    (tensor([[-1.2000, -0.5000, -1.0000]]), tensor([[ True, False, False]]))
    """
    return clip_ratio(torch.exp(logps - old_logps), advantages, eps_low, eps_high)


def clip_ratio(ratio: Tensor, advantages: Tensor, eps_low: float, eps_high: float) -> ObjectiveTerms:
    """PPO's clipped surrogate of a given ratio ``(N, T)`` (token- or sequence-level) and advantages ``(N, T)``."""
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    low = (ratio < 1 - eps_low) & (advantages < 0)
    high = (ratio > 1 + eps_high) & (advantages > 0)
    return ObjectiveTerms(per_token, ratio, low, high)


def _advantages(inputs: PolicyLossInputs, objective: str) -> Tensor:
    if inputs.advantages is None:
        raise ValueError(f"objective {objective!r} needs advantages (N,) or (N, T)")
    return _token_advantages(inputs.advantages, inputs.logps)


def _eps_high(settings: LossSettings) -> float:
    return settings.epsilon if settings.epsilon_high is None else settings.epsilon_high


@OBJECTIVES.register("clipped")
def clipped_objective(inputs: PolicyLossInputs, settings: LossSettings) -> ObjectiveTerms:
    """GRPO's PPO-clip objective with ``epsilon`` below and ``epsilon_high`` (default ``epsilon``) above; the ratio
    at ``importance_sampling_level`` (default ``token``; ``sequence`` is TRL's GSPO)."""
    adv = _advantages(inputs, "clipped")
    ratio = importance_ratio(inputs, settings, "token")
    return clip_ratio(ratio, adv, settings.epsilon, _eps_high(settings))


@OBJECTIVES.register("gspo")
def gspo_objective(inputs: PolicyLossInputs, settings: LossSettings) -> ObjectiveTerms:
    """GSPO (arXiv 2507.18071): ``clipped`` with the sequence-level ratio ``s_i`` (level ``sequence`` only).

    >>> lp = torch.log(torch.tensor([[2.0, 0.5], [1.0, 1.0]]))  # s_1 = exp((log 2 + log 0.5) / 2) = 1
    >>> t = gspo_objective(PolicyLossInputs(lp, torch.ones(2, 2), torch.ones(2), torch.zeros(2, 2)), LossSettings())
    >>> t.ratio, t.per_token_loss
    (tensor([[1., 1.],
            [1., 1.]]), tensor([[-1., -1.],
            [-1., -1.]]))
    """
    level = settings.importance_sampling_level or "sequence"
    if level != "sequence":
        raise ValueError(f"objective 'gspo' is the sequence-level ratio; importance_sampling_level={level!r} "
                         "contradicts it (use objective 'clipped' for token-level ratios)")
    adv = _advantages(inputs, "gspo")
    ratio = importance_ratio(inputs, settings, "sequence")
    return clip_ratio(ratio, adv, settings.epsilon, _eps_high(settings))


@OBJECTIVES.register("cispo")
def cispo_objective(inputs: PolicyLossInputs, settings: LossSettings) -> ObjectiveTerms:
    """CISPO (arXiv 2506.13585): ``-sg(min(rho, 1 + epsilon_high)) * A * lp`` per token, ``(N, T)``.

    >>> lp = torch.log(torch.tensor([[2.0, 0.5]]))  # rho = [2, 0.5] against lp_old = 0; cap 1.2
    >>> t = cispo_objective(PolicyLossInputs(lp, torch.ones(1, 2), torch.ones(1), torch.zeros(1, 2)), LossSettings())
    >>> t.per_token_loss, t.high_clipped
    (tensor([[-0.8318,  0.3466]]), tensor([[ True, False]]))
    """
    adv = _advantages(inputs, "cispo")
    ratio = importance_ratio(inputs, settings, "token")
    cap = 1.0 + _eps_high(settings)
    weight = torch.clamp(ratio, max=cap).detach()
    none = torch.zeros_like(ratio, dtype=torch.bool)
    return ObjectiveTerms(-weight * adv * inputs.logps, ratio, none, ratio.detach() > cap)


@OBJECTIVES.register("sapo")
def sapo_objective(inputs: PolicyLossInputs, settings: LossSettings) -> ObjectiveTerms:
    """SAPO (arXiv 2511.20347): ``-sigmoid(tau * (rho - 1)) * 4 / tau * A`` per token, ``(N, T)``, ``tau`` by the
    sign of ``A`` (``sapo_temperature_pos`` where ``A > 0``, else ``sapo_temperature_neg``).

    >>> t = sapo_objective(PolicyLossInputs(torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([[1.0, -1.0]])),
    ...                    LossSettings(sapo_temperature_pos=1.0, sapo_temperature_neg=2.0))
    >>> t.per_token_loss  # rho = 1: -(4 / tau) * sigmoid(0) * A = -2 / tau * A
    tensor([[-2.,  1.]])
    """
    adv = _advantages(inputs, "sapo")
    ratio = importance_ratio(inputs, settings, "token")
    tau = torch.full_like(ratio, settings.sapo_temperature_neg).masked_fill(adv > 0, settings.sapo_temperature_pos)
    gate = torch.sigmoid(tau * (ratio - 1)) * 4 / tau
    none = torch.zeros_like(ratio, dtype=torch.bool)
    return ObjectiveTerms(-gate * adv, ratio, none, none)


@OBJECTIVES.register("opd")
def opd_objective(inputs: PolicyLossInputs, settings: LossSettings) -> ObjectiveTerms:
    """Video-OPD: ``-r_t * rho`` with ``r_t = (lp_teacher - lp_old).detach()``; optional clamp and ratio clip.
    Token level only (``r_t`` is per token)."""
    if (settings.importance_sampling_level or "token") != "token":
        raise ValueError(f"objective 'opd' weighs per-token rewards by per-token ratios; importance_sampling_level="
                         f"{settings.importance_sampling_level!r} is not defined for it")
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
        if settings.use_bias_correction_kl:
            kl = kl * terms.ratio
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
