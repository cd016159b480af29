"""Rewards for GRPO on temporal grounding, with TRL 1.16's protocol: ``f(prompts=..., completions=...,
completion_ids=..., **columns, trainer_state=..., log_extra=..., log_metric=...) -> list[float | None]``.

Built-ins: ``iou``, ``tiou`` (Time-R1's timestamp-aware IoU), ``format`` (think/answer), ``answer_format``
(no-think), ``glue_iou`` (merged multi-span IoU for grounded QA), ``answer_letter`` (multiple choice).
Look one up with :func:`get_reward` (also entry points of the ``timegrpo.rewards`` group and
``package.module:function`` paths, and reward models by folder or Hub id); combine several with :class:`RewardSet`.
See :mod:`timegrpo.rewards.base` for the protocol and :mod:`timegrpo.rewards.columns` for the call the trainer makes.
"""

from timegrpo.rewards import format as _format  # noqa: F401  (registers format, answer_format)
from timegrpo.rewards import iou as _iou  # noqa: F401  (registers iou, tiou, glue_iou)
from timegrpo.rewards import qa as _qa  # noqa: F401  (registers answer_letter)
from timegrpo.rewards.base import (
    ENTRY_POINT_GROUP,
    LOG_EXTRA,
    LOG_METRIC,
    REWARDS,
    RewardError,
    RewardFunc,
    completion_text,
    entry_point_names,
    get_reward,
    register_reward,
    reward_names,
)
from timegrpo.rewards.combine import RewardBreakdown, RewardSet, RewardSpec, compute_rewards
from timegrpo.rewards.model import RewardModel

__all__ = [
    "ENTRY_POINT_GROUP",
    "LOG_EXTRA",
    "LOG_METRIC",
    "REWARDS",
    "RewardBreakdown",
    "RewardError",
    "RewardFunc",
    "RewardModel",
    "RewardSet",
    "RewardSpec",
    "completion_text",
    "compute_rewards",
    "entry_point_names",
    "get_reward",
    "register_reward",
    "reward_names",
]
