"""RL math as registered pure tensor functions (STYLE rule 1): advantages, KL estimators, importance-sampling
levels, policy objectives and loss aggregation. The trainer looks each up by its config name; see each module's
docstring for the maths."""

from timegrpo.algos.advantages import (
    ADVANTAGES,
    SCALE_REWARDS,
    dr_grpo_advantages,
    group_relative_advantages,
    zero_variance_groups,
    zero_variance_share,
)
from timegrpo.algos.aggregate import AGGREGATIONS, dapo_tokens_per_micro_batch
from timegrpo.algos.importance import IMPORTANCE_LEVELS
from timegrpo.algos.kl import KL_ESTIMATORS
from timegrpo.algos.losses import (
    OBJECTIVES,
    LossSettings,
    PolicyLossInputs,
    PolicyLossOutput,
    compute_policy_loss,
)

__all__ = [
    "ADVANTAGES",
    "AGGREGATIONS",
    "IMPORTANCE_LEVELS",
    "KL_ESTIMATORS",
    "OBJECTIVES",
    "SCALE_REWARDS",
    "LossSettings",
    "PolicyLossInputs",
    "PolicyLossOutput",
    "compute_policy_loss",
    "dapo_tokens_per_micro_batch",
    "dr_grpo_advantages",
    "group_relative_advantages",
    "zero_variance_groups",
    "zero_variance_share",
]
