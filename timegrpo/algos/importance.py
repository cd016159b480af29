"""Importance-sampling levels: per-token log-ratios ``(N, T)`` -> the log-weights an objective exponentiates.

``log_ratio = lp - lp_old`` ``(N, T)`` (current policy minus the policy that sampled the tokens) and ``mask``
``(N, T)`` (1 on completion tokens). Each level returns ``(N, T)`` log-weights ``log w``; objectives use
``rho = exp(log w)``.

* ``token`` (GRPO, PPO): ``log w_t = lp_t - lp_old_t``, one weight per token.
* ``sequence`` (GSPO, Zheng et al. 2025, arXiv 2507.18071, eq. 7): one length-normalised weight per completion,
  ``log s_i = (1 / |y_i|) sum_t m_it (lp_it - lp_old_it)``, broadcast to the completion's ``T`` positions. This is
  TRL 1.16's ``importance_sampling_level="sequence"`` (``(log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1)``,
  shape ``(N, 1)`` there); broadcasting it to ``(N, T)`` before the aggregation gives the same loss and the same
  gradient, since every aggregation sums ``loss * mask`` over the positions (the gradient of the broadcast sums
  back onto the one weight). A completion with no unmasked token gets ``log s = 0``.

Registered by name (``train.importance_sampling_level``); the objectives look the level up, never branch on it.

>>> import torch
>>> log_ratio = torch.tensor([[0.2, 0.4, 9.0], [0.3, 0.0, 0.0]])
>>> mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
>>> sequence_log_weights(log_ratio, mask)
tensor([[0.3000, 0.3000, 0.3000],
        [0.3000, 0.3000, 0.3000]])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from timegrpo.registry import Registry

LevelFn = Callable[[Tensor, Tensor], Tensor]

#: Importance-sampling levels by name; each maps ``(log_ratio, mask)`` ``(N, T)`` to log-weights ``(N, T)``.
IMPORTANCE_LEVELS: Registry[LevelFn] = Registry("importance sampling level")


@IMPORTANCE_LEVELS.register("token")
def token_log_weights(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """``lp_t - lp_old_t`` per token, ``(N, T)``, unchanged."""
    return log_ratio


@IMPORTANCE_LEVELS.register("sequence")
def sequence_log_weights(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """GSPO's ``log s_i``: the masked mean of ``log_ratio`` over each completion's tokens, broadcast to ``(N, T)``."""
    m = mask.to(log_ratio.dtype)
    masked = torch.where(m > 0, log_ratio * m, torch.zeros_like(log_ratio))  # padding may hold inf: never NaN
    per_seq = masked.sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)
    return per_seq.expand_as(log_ratio)
