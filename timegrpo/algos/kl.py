"""Per-token KL estimators between the policy and the reference, on the sampled tokens.

``lp = log pi(a_t)`` (policy, ``(B*G, T)``) and ``lr = log pi_ref(a_t)`` (reference, ``(B*G, T)``), for tokens
sampled from the policy. Schulman's estimators of ``KL(pi || pi_ref)``:

* ``k1 = lp - lr``: unbiased, high variance, can be negative.
* ``k2 = (lp - lr)^2 / 2``: biased, low variance, non-negative.
* ``k3 = exp(lr - lp) - (lr - lp) - 1``: unbiased, low variance, non-negative; what Time-R1, DeepSeekMath
  GRPO and TRL 1.16 use. Not clamped (verl's ``low_var_kl`` clamps to [-10, 10]; TRL and Time-R1 do not).

>>> import torch
>>> lp, lr = torch.tensor([[-1.0]]), torch.tensor([[-2.0]])
>>> kl_k1(lp, lr), kl_k3(lp, lr)
(tensor([[1.]]), tensor([[0.3679]]))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from timegrpo.registry import Registry

KLFn = Callable[[Tensor, Tensor], Tensor]

#: KL estimators by name (``train.kl_estimator``); each maps ``(logps, ref_logps)`` ``(N, T)`` to ``(N, T)``.
KL_ESTIMATORS: Registry[KLFn] = Registry("KL estimator")


@KL_ESTIMATORS.register("k1")
def kl_k1(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """``lp - lr`` per token, ``(N, T)``."""
    return logps - ref_logps


@KL_ESTIMATORS.register("k2")
def kl_k2(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """``(lp - lr)^2 / 2`` per token, ``(N, T)``."""
    return 0.5 * (logps - ref_logps) ** 2


@KL_ESTIMATORS.register("k3")
def kl_k3(logps: Tensor, ref_logps: Tensor) -> Tensor:
    """``exp(lr - lp) - (lr - lp) - 1`` per token, ``(N, T)`` (Time-R1, TRL)."""
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1
