"""A GRPO step's metrics from its micro-batches (and ``num_iterations`` passes) on every process, each reduced
the way its name says, so that the logged value does not depend on how the step is cut into micro-batches and
processes.

* **What the rewards log** with ``log_metric``: per name, the mean of every logged value of the step on every
  process (:func:`logged_metrics`; TRL: the same).
* **Per-completion values** (the total reward, each reward function's reward, the IoU the rewards report; None
  / NaN left out): the mean over every completion of the step on every process, and for each reward function
  the standard deviation, from their count, sum and sum of squares (TRL gathers the completions and takes
  ``nanmean`` / ``nanstd``: the same). ``reward_std`` is TRL's: the mean over groups of the within-group std
  (a per-micro-batch mean, below); with one completion per prompt (OPD) it and ``frac_reward_zero_std`` are not
  logged.
* **Token means** of the loss (``kl``, ``clip_ratio/*``, ``ratio/mean``, ``opd/reward_mean``: every loss metric
  but ``policy_loss``, ``num_tokens`` and the extremes): weighted by each micro-batch's ``num_tokens``, so they
  are means over the step's tokens.
* **Extremes** (``.../min``, ``.../max``): the min / max over micro-batches, iterations and processes.
* ``num_tokens``: the completion tokens of the step, summed over micro-batches and processes (once, not once
  per iteration).
* Anything else (``loss``, ``policy_loss``, ``grad_norm``, and the per-micro-batch rollout metrics): the plain
  mean over micro-batches and processes. ``loss`` is then the mean of the micro-batch losses, the objective the
  optimiser step follows (:mod:`timegrpo.algos.aggregate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from timegrpo.trainer.loop import mean_dicts

#: ``reduce(metrics, how)``: ``metrics`` combined over processes, ``how`` in sum / mean / max
#: (:meth:`timegrpo.trainer.loop.TrainLoop.reduce`).
Reduce = Callable[[dict[str, float], str], dict[str, float]]

#: Loss metrics that are neither token means nor extremes.
NOT_TOKEN_MEANS = ("loss", "policy_loss", "num_tokens", "grad_norm")


@dataclass(frozen=True)
class RolloutLog:
    """What one drawn micro-batch adds to its step's metrics: ``metrics``, per-micro-batch values averaged over
    micro-batches and processes (``reward_std``, ``completions/*``), and ``values``, per-completion ``(n,)``
    tensors (NaN = none) averaged over every completion (``reward``, ``rewards/{name}/mean``, ``iou``); and what
    the rewards logged (``extra``, ``logged``)."""

    metrics: dict[str, float]
    values: dict[str, torch.Tensor]
    #: what the rewards reported through ``log_extra``: per-completion columns of ``completions.jsonl``
    extra: dict[str, list[Any]] = field(default_factory=dict)
    #: what the rewards passed to ``log_metric``: every value of each name (:func:`logged_metrics`)
    logged: dict[str, list[float]] = field(default_factory=dict)


def rollout_metrics(logs: Sequence[RolloutLog], reduce: Reduce) -> dict[str, float]:
    """The step's rollout metrics from the logs of every micro-batch it drew (same keys on every process)."""
    out = reduce(mean_dicts([log.metrics for log in logs]), "mean")
    out.update(value_metrics({k: [log.values[k] for log in logs] for k in logs[0].values}, reduce))
    return out


def logged_metrics(logs: Sequence[RolloutLog], reduce: Reduce, names: Sequence[str]) -> dict[str, float]:
    """What the rewards passed to ``log_metric``: for each of ``names`` (the same on every process), the mean of
    every value logged in the step's micro-batches on every process, as TRL averages them (sum over processes over
    their count); a name nobody logged this step is left out.

    >>> logs = [RolloutLog({}, {}, logged={"judge/calls": [2.0, 4.0]}), RolloutLog({}, {}, logged={"judge/calls": [6.0]})]
    >>> logged_metrics(logs, lambda m, how: m, ["judge/calls"])
    {'judge/calls': 4.0}
    """
    partial = {}
    for name in names:
        values = [v for log in logs for v in log.logged.get(name, [])]
        partial.update({f"{name}\0s": float(sum(values)), f"{name}\0n": float(len(values))})
    total = reduce(partial, "sum")
    return {name: total[f"{name}\0s"] / total[f"{name}\0n"] for name in names if total[f"{name}\0n"]}


def kind(key: str) -> str:
    """How a loss metric combines: ``min``, ``max``, ``sum`` (``num_tokens``), ``tokens`` (a token mean) or
    ``mean``.

    >>> [kind(k) for k in ("ratio/min", "ratio/max", "num_tokens", "kl", "loss")]
    ['min', 'max', 'sum', 'tokens', 'mean']
    """
    if key.endswith("/min"):
        return "min"
    if key.endswith("/max"):
        return "max"
    if key == "num_tokens":
        return "sum"
    return "mean" if key in NOT_TOKEN_MEANS else "tokens"


def value_metrics(values: dict[str, Sequence[torch.Tensor]], reduce: Reduce) -> dict[str, float]:
    """The mean of every value of every micro-batch of ``values[key]`` (``(n,)`` tensors, NaN = none) on every
    process, and for a ``{prefix}/mean`` key also ``{prefix}/std``: the sample (Bessel-corrected) std, 0 for
    fewer than two values. A key without any value is left out."""
    partial = {}
    for key, tensors in values.items():
        x = torch.cat([t.detach().double().flatten().cpu() for t in tensors])
        x = x[~torch.isnan(x)]
        partial.update({f"{key}\0n": float(x.numel()), f"{key}\0s": float(x.sum()), f"{key}\0q": float((x * x).sum())})
    total = reduce(partial, "sum")
    out = {}
    for key in values:
        n, s, q = (total[f"{key}\0{c}"] for c in "nsq")
        if n == 0:
            continue
        out[key] = mean = s / n
        if key.endswith("/mean"):
            out[f"{key[:-len('/mean')]}/std"] = math.sqrt(max(q - s * mean, 0.0) / (n - 1)) if n > 1 else 0.0
    return out


def loss_metrics(logs: Sequence[dict[str, float]], reduce: Reduce, iterations: int = 1) -> dict[str, float]:
    """The step's loss metrics from the logs of its backward passes (every micro-batch, ``iterations`` times),
    combined as the module docstring says."""
    by_kind: dict[str, dict[str, float]] = {"mean": {}, "sum": {}, "max": {}}
    mean_keys = sorted({k for log in logs for k in log if kind(k) == "mean"})
    by_kind["mean"] = mean_dicts([{k: log[k] for k in mean_keys if k in log} for log in logs])
    for key in sorted({k for log in logs for k in log}):
        how = kind(key)
        present = [log for log in logs if key in log]
        if how in ("min", "max"):
            sign = -1.0 if how == "min" else 1.0
            finite = [sign * log[key] for log in present if not math.isnan(log[key])]
            by_kind["max"][key] = max(finite, default=-math.inf)
        elif how == "sum":
            by_kind["sum"][key] = sum(log[key] for log in present) / iterations
        elif how == "tokens":
            by_kind["sum"][f"{key}\0w"] = sum(log[key] * log.get("num_tokens", 1.0) for log in present)
            by_kind["sum"][f"{key}\0t"] = sum(log.get("num_tokens", 1.0) for log in present)
    reduced = {how: reduce(d, how) if d else {} for how, d in by_kind.items()}
    out = dict(reduced["mean"])
    for key, value in reduced["max"].items():
        value = -value if kind(key) == "min" else value
        out[key] = value if math.isfinite(value) else math.nan
    sums = reduced["sum"]
    for key, value in sums.items():
        if "\0" not in key:
            out[key] = value
        elif key.endswith("\0w"):
            name = key[:-2]
            out[name] = value / sums[f"{name}\0t"] if sums[f"{name}\0t"] else math.nan
    return dict(sorted(out.items()))
