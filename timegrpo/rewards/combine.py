"""Several weighted rewards evaluated together, each component kept for logging.

:class:`RewardSet` resolves its rewards once (names, entry points, paths, reward models, callables:
:func:`get_reward`) and then, per batch, calls each with TRL's keywords (:mod:`timegrpo.rewards.base`) and returns
every component and the weighted total. As TRL 1.16's ``GRPOTrainer`` does, the synchronous rewards run one after
the other and the ``async`` ones are then gathered concurrently (on an event loop of the set's own, in a daemon
thread, kept across calls so that an async client a reward holds stays on one loop).

The total follows TRL: a None (not applicable; TRL's NaN) is skipped, i.e. the weighted sum is over the components
that apply (``nansum``); a completion to which **no** component applies is unscorable and its total is NaN (TRL:
"nansum would collapse it to 0, which both biases the per-group baseline and hands the completion a spurious
advantage"). The advantage estimators (:mod:`timegrpo.algos.advantages`) leave a NaN out of its group's mean and
std and give it advantage 0, and the logged means leave it out (``nanmean``), as TRL does. A reward that returns
NaN or an infinite value is an error naming the reward and the sample's ``qid``
(:func:`timegrpo.rewards.base.checked`): None is the protocol's "does not apply", never NaN.

Each reward gets its own ``log_extra`` and may report per-completion columns of what it parsed (``iou``/``tiou``:
``pred_start``, ``pred_end``, ``iou``); they land in ``RewardBreakdown.extra``. When two rewards report the same
column, the FIRST in the set's order wins and later values are dropped (so a recipe's first reward decides what,
e.g., the logged ``iou`` means). What rewards pass to ``log_metric`` lands in ``RewardBreakdown.metrics``: every
value of each name, in call order (the trainer averages them over the step).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from timegrpo.rewards.base import LOG_EXTRA, LOG_METRIC, RewardError, RewardFunc, get_reward, is_async_reward


@dataclass
class RewardSpec:
    """One reward of a :class:`RewardSet`."""

    name: str = field(metadata={"help": "reward name, entry-point name, 'package.module:function' path, or a "
                                        "reward model's folder or Hub id"})
    weight: float = field(default=1.0, metadata={"help": "weight of this reward in the total"})
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword options, e.g. {strict: true}"})
    label: str | None = field(default=None, metadata={"help": "name it is logged under (default: name)"})
    func: Callable[..., Any] | None = field(
        default=None, metadata={"help": "the reward itself (Python API: a function, as TRL's reward_funcs take); "
                                        "name is then only its label"})

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
    ``log_extra`` (first reporter of a column wins); ``metrics[name]``: every value passed to ``log_metric``."""

    total: list[float]
    per_func: dict[str, list[float | None]]
    extra: dict[str, list[Any]] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)

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


class MetricLog:
    """The ``log_metric(name, value)`` given to one reward of one call: appends ``float(value)`` to
    ``into[name]`` (shared by the rewards of a call, as TRL's pending metrics are); a name that is not a str or a
    value that is not a real number is an error naming the reward."""

    def __init__(self, reward: str, into: dict[str, list[float]]) -> None:
        self.reward, self.into = reward, into

    def __call__(self, name: str, value: float) -> None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RewardError(f"reward {self.reward!r} logged metric {name!r} = {value!r}; "
                              "log_metric takes one number") from None
        if not isinstance(name, str) or not name:
            raise RewardError(f"reward {self.reward!r} logged a metric named {name!r}; want a non-empty str")
        self.into.setdefault(name, []).append(number)


def _as_spec(item: Any) -> RewardSpec:
    if isinstance(item, RewardSpec):
        return item
    if isinstance(item, str):
        return RewardSpec(item)
    if isinstance(item, tuple):
        spec = _as_spec(item[0])
        spec.weight = float(item[1])
        spec.__post_init__()
        return spec
    if callable(item):
        return RewardSpec(getattr(item, "__name__", type(item).__name__), func=item)
    return RewardSpec(**dict(item))


class RewardSet:
    """Weighted rewards: ``RewardSet(["tiou", ("format", 0.5)])(completions, **columns) -> RewardBreakdown``.

    Items are :class:`RewardSpec`, names, ``(name, weight)`` pairs, dicts of RewardSpec fields, or callables
    (logged under their ``__name__``). ``funcs``/``weights`` can be handed to TRL's ``GRPOTrainer``
    (``reward_funcs``, ``reward_weights``).

    >>> rs = RewardSet(["iou", ("format", 0.5)])
    >>> b = rs(["<think>x</think><answer>0 to 10</answer>", "<answer>5 to 10</answer>"], windows=[[[5, 10]]] * 2)
    >>> b.per_func, b.total
    ({'iou': [0.5, 1.0], 'format': [1.0, 0.0]}, [1.0, 1.0])
    >>> b.extra
    {'pred_start': [0.0, 5.0], 'pred_end': [10.0, 10.0], 'iou': [0.5, 1.0]}
    >>> RewardSet(["iou"])(["<answer>0 to 10</answer>"], windows=[[]]).total  # no window: iou is None -> NaN
    [nan]
    """

    def __init__(self, specs: Sequence[RewardSpec | str | Mapping[str, Any] | tuple[str, float] | Callable[..., Any]]
                 ) -> None:
        self.specs = [_as_spec(s) for s in specs]
        if not self.specs:
            raise ValueError("a RewardSet needs at least one reward")
        keys = [s.key for s in self.specs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"rewards {dup} appear twice; give each a distinct 'label'")
        self.funcs: list[RewardFunc] = [get_reward(s.func or s.name, **s.options) for s in self.specs]
        for f, s in zip(self.funcs, self.specs):
            f.__name__ = s.key
        self.weights: list[float] = [s.weight for s in self.specs]
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.specs]

    def to(self, device: Any) -> RewardSet:
        """Move the reward models among the rewards (anything with a ``to``, e.g.
        :class:`timegrpo.rewards.model.RewardModel`) to ``device``."""
        for f in self.funcs:
            inner = getattr(f, "__wrapped__", f)
            if callable(getattr(inner, "to", None)):
                inner.to(device)
        return self

    def __call__(self, completions: Sequence[Any], **columns: Any) -> RewardBreakdown:
        for hook in (LOG_EXTRA, LOG_METRIC):
            if hook in columns:
                raise ValueError(f"a RewardSet gives each reward its own {hook!r} and returns what they log in the "
                                 "RewardBreakdown (extra, metrics); do not pass one")
        n = len(completions)
        metrics: dict[str, list[float]] = {}
        logs = {s.key: ExtraColumns(s.key, n) for s in self.specs}
        per_func: dict[str, list[float | None]] = {}
        deferred = []
        for s, f in zip(self.specs, self.funcs):
            hooks = {LOG_EXTRA: logs[s.key], LOG_METRIC: MetricLog(s.key, metrics)}
            if is_async_reward(f):
                deferred.append((s.key, f, hooks))  # gathered below, concurrently
            else:
                per_func[s.key] = f(completions, **columns, **hooks)
        if deferred:
            outs = self._gather([f(completions, **columns, **hooks) for _, f, hooks in deferred])
            per_func.update(zip([key for key, _, _ in deferred], outs, strict=True))
        per_func = {s.key: per_func[s.key] for s in self.specs}
        extra: dict[str, list[Any]] = {}
        for s in self.specs:
            for col, values in logs[s.key].columns.items():
                extra.setdefault(col, values)  # the first reward to report a column wins
        return RewardBreakdown(total=weighted_total(per_func.values(), self.weights, n), per_func=per_func,
                               extra=extra, metrics=metrics)

    def _gather(self, coroutines: list[Awaitable[Any]]) -> list[Any]:
        """Run ``coroutines`` concurrently on the set's event loop (started on first use) and wait for all."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="timegrpo-rewards", daemon=True).start()

        async def gather() -> list[Any]:
            return list(await asyncio.gather(*coroutines))

        return asyncio.run_coroutine_threadsafe(gather(), self._loop).result()


def weighted_total(per_func: Any, weights: Sequence[float], n: int) -> list[float]:
    """Per completion, ``sum(w * r)`` over the rewards that apply (not None; TRL's ``nansum``), NaN when none does.

    >>> weighted_total([[1.0, None, None], [0.5, 0.5, None]], [1.0, 2.0], 3)
    [2.0, 1.0, nan]
    """
    columns = list(per_func)
    total = []
    for i in range(n):
        applied = [w * v[i] for w, v in zip(weights, columns) if v[i] is not None]
        total.append(float(sum(applied)) if applied else float("nan"))
    return total


def compute_rewards(
    specs: Sequence[RewardSpec | str | Mapping[str, Any] | tuple[str, float]],
    completions: Sequence[Any],
    **columns: Any,
) -> RewardBreakdown:
    """One-off :class:`RewardSet` call (build a RewardSet once when calling in a loop)."""
    return RewardSet(specs)(completions, **columns)
