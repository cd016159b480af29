"""Several weighted rewards evaluated together, each component kept for logging.

:class:`RewardSet` resolves its rewards once (names, entry points, paths: :func:`get_reward`) and then, per
batch, returns every component and the weighted total. The total follows TRL 1.16's ``GRPOTrainer``: a None
(not applicable) is skipped, i.e. the sum is over the components that apply; a completion to which **no**
component applies is unscorable and its total is NaN (TRL: "nansum would collapse it to 0, which both biases the
per-group baseline and hands the completion a spurious advantage"). The advantage estimators
(:mod:`timegrpo.algos.advantages`) leave a NaN out of its group's mean and std and give it advantage 0. A reward
that returns NaN or an infinite value is an error naming the reward and the sample's ``qid``
(:func:`timegrpo.rewards.base.checked`): None is the protocol's "does not apply", never NaN.

Each reward that accepts TRL's ``log_extra`` keyword gets one and may report per-completion columns of what it
parsed (``iou``/``tiou``: ``pred_start``, ``pred_end``, ``iou``); they land in ``RewardBreakdown.extra``. When
two rewards report the same column, the FIRST in the set's order wins and later values are dropped (so a
recipe's first reward decides what, e.g., the logged ``iou`` means).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from timegrpo.rewards.base import LOG_EXTRA, RewardError, RewardFunc, get_reward


@dataclass
class RewardSpec:
    """One reward of a :class:`RewardSet`."""

    name: str = field(metadata={"help": "reward name, entry-point name or 'package.module:function' path"})
    weight: float = field(default=1.0, metadata={"help": "weight of this reward in the total"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword options, e.g. {strict: true}"})
    label: str | None = field(default=None, metadata={"help": "name it is logged under (default: name)"})

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight):
            raise ValueError(f"reward {self.name!r}: weight must be finite, got {self.weight}")

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass
class RewardBreakdown:
    """Per-completion rewards: ``total[i]`` (NaN when no component applies) and each component
    ``per_func[label][i]`` (None = not applicable); ``extra[column][i]``: what the rewards reported through
    ``log_extra`` (first reporter of a column wins)."""

    total: list[float]
    per_func: dict[str, list[float | None]]
    extra: dict[str, list[Any]] = field(default_factory=dict)

    def means(self) -> dict[str, float]:
        """Mean of each component over the completions it applies to, and of ``total`` over the scorable
        completions (NaN when there are none), as TRL logs ``rewards/<name>/mean`` and ``reward``."""
        out = {key: _mean([v for v in vals if v is not None]) for key, vals in self.per_func.items()}
        out["total"] = _mean([t for t in self.total if not math.isnan(t)])
        return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class ExtraColumns:
    """The ``log_extra(column, values)`` given to one reward of one call: keeps each column's values, checked
    to be one per completion; a column reported twice by the same reward is an error."""

    def __init__(self, reward: str, n: int) -> None:
        self.reward, self.n = reward, n
        self.columns: dict[str, list[Any]] = {}

    def __call__(self, column: str, values: list) -> None:
        values = list(values)
        if len(values) != self.n:
            raise RewardError(f"reward {self.reward!r} reported {len(values)} values of column {column!r} "
                              f"for {self.n} completions")
        if column in self.columns:
            raise RewardError(f"reward {self.reward!r} reported column {column!r} twice")
        self.columns[column] = values


def _as_spec(item: RewardSpec | str | Mapping[str, Any] | tuple[str, float]) -> RewardSpec:
    if isinstance(item, RewardSpec):
        return item
    if isinstance(item, str):
        return RewardSpec(item)
    if isinstance(item, tuple):
        return RewardSpec(item[0], float(item[1]))
    return RewardSpec(**dict(item))


class RewardSet:
    """Weighted rewards: ``RewardSet(["tiou", ("format", 0.5)])(completions, **columns) -> RewardBreakdown``.

    Items are :class:`RewardSpec`, names, ``(name, weight)`` pairs or dicts of RewardSpec fields.
    ``funcs``/``weights`` can be handed to TRL's ``GRPOTrainer`` (``reward_funcs``, ``reward_weights``).

    >>> rs = RewardSet(["iou", ("format", 0.5)])
    >>> b = rs(["<think>x</think><answer>0 to 10</answer>", "<answer>5 to 10</answer>"], windows=[[[5, 10]]] * 2)
    >>> b.per_func, b.total
    ({'iou': [0.5, 1.0], 'format': [1.0, 0.0]}, [1.0, 1.0])
    >>> b.extra
    {'pred_start': [0.0, 5.0], 'pred_end': [10.0, 10.0], 'iou': [0.5, 1.0]}
    >>> RewardSet(["iou"])(["<answer>0 to 10</answer>"], windows=[[]]).total  # no window: iou is None -> NaN
    [nan]
    """

    def __init__(self, specs: Sequence[RewardSpec | str | Mapping[str, Any] | tuple[str, float]]) -> None:
        self.specs = [_as_spec(s) for s in specs]
        if not self.specs:
            raise ValueError("a RewardSet needs at least one reward")
        keys = [s.key for s in self.specs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"rewards {dup} appear twice; give each a distinct 'label'")
        self.funcs: list[RewardFunc] = [get_reward(s.name, **s.options) for s in self.specs]
        for f, s in zip(self.funcs, self.specs):
            f.__name__ = s.key
        self.weights: list[float] = [s.weight for s in self.specs]

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.specs]

    def __call__(self, completions: Sequence[Any], **columns: Any) -> RewardBreakdown:
        if LOG_EXTRA in columns:
            raise ValueError(f"a RewardSet gives each reward its own {LOG_EXTRA!r} and returns the columns in "
                             "RewardBreakdown.extra; do not pass one")
        per_func: dict[str, list[float | None]] = {}
        extra: dict[str, list[Any]] = {}
        for s, f in zip(self.specs, self.funcs):
            log = ExtraColumns(s.key, len(completions))
            per_func[s.key] = f(completions, **columns, **{LOG_EXTRA: log})
            for column, values in log.columns.items():
                extra.setdefault(column, values)  # the first reward to report a column wins
        total = []
        for i in range(len(completions)):
            applied = [w * v[i] for w, v in zip(self.weights, per_func.values()) if v[i] is not None]
            total.append(float(sum(applied)) if applied else float("nan"))
        return RewardBreakdown(total=total, per_func=per_func, extra=extra)


def compute_rewards(
    specs: Sequence[RewardSpec | str | Mapping[str, Any] | tuple[str, float]],
    completions: Sequence[Any],
    **columns: Any,
) -> RewardBreakdown:
    """One-off :class:`RewardSet` call (build a RewardSet once when calling in a loop)."""
    return RewardSet(specs)(completions, **columns)
