"""Video-OPD's TVDF selection (SPEC section 3): samples where a reliable teacher beats the current student most.

Each pool sample has the student's IoUs (``ious``) and the teacher's (``teacher_ious``: ``k_t = 4`` answers,
``timegrpo curriculum score --teacher``). Two steps:

1. reliability (:func:`reliable`): a sample stays only when the teacher's mean IoU is >= 0.5 (ours, a value);
2. disagreement ``delta = mean IoU_teacher - mean IoU_student`` (:func:`disagreement`), and one of the selectors
   registered in :data:`TVDF_SELECTORS` picks ``k`` of the reliable samples:

- ``tvdf`` (the default): the ``k`` largest ``delta`` (ties, to 9 decimals: the earlier sample);
- ``tvdf_even``: ``k`` evenly spaced over the reliable samples sorted by ``delta`` descending (stable): the rounded
  indices of ``linspace(0, n - 1, k)``, duplicates removed, as ``timerft_refilter`` spaces them;
- ``tvdf_buckets``: 5 equal-width ``delta`` buckets between the smallest and the largest reliable ``delta`` (the
  last one closed), an equal share of ``k`` from each (:func:`equal_quotas`: a bucket with too few samples gives
  the rest to the others), drawn uniformly without replacement inside each (``numpy.random.default_rng(seed)``);
- ``tvdf_gaussian``: ``k`` drawn without replacement with weight ``exp(-(delta - 0.9)^2 / (2 * 0.2^2))``
  (``RandomState(seed).choice(n, k, replace=False, p=w / sum(w))``, as ``timerft`` draws).

Every selector keeps all reliable samples when there are no more than ``k``, and returns pool indices in
increasing order. Departures where the paper is silent (ours): the bucket edges and the equal split, ties, and the
threshold's ``>=``. :func:`run_tvdf_select` is ``timegrpo curriculum select`` for these selectors (a moment_detr
file with the score fields, ``teacher_ious`` and ``delta`` in ``meta``, and a summary beside it);
:func:`run_selector` runs any registered selector by its name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from timegrpo.curriculum.difficulty import mean_iou
from timegrpo.registry import Registry

#: ``(student ious, teacher ious, k, seed) -> pool indices``, the reliability filter applied inside.
TeacherSelector = Callable[[Sequence[Sequence[float]], Sequence[Sequence[float]], int, int], list[int]]
TVDF_SELECTORS: Registry[TeacherSelector] = Registry("teacher-guided selector")

RELIABLE_IOU = 0.5
BUCKETS = 5
GAUSSIAN_CENTER, GAUSSIAN_SIGMA = 0.9, 0.2


def reliable(teacher_ious: Sequence[Sequence[float]], threshold: float = RELIABLE_IOU) -> list[int]:
    """Indices whose teacher mean IoU is at least ``threshold``.

    >>> reliable([[0.5, 0.5], [0.9, 0.0], [1.0, 0.2]])
    [0, 2]
    """
    return [i for i, x in enumerate(teacher_ious) if mean_iou(x) >= threshold]


def disagreement(ious: Sequence[float], teacher_ious: Sequence[float]) -> float:
    """``mean IoU_teacher - mean IoU_student``.

    >>> disagreement([0.25, 0.25], [0.75, 0.5, 1.0, 0.75])
    0.5
    """
    return mean_iou(teacher_ious) - mean_iou(ious)


def _ranked(ious: Sequence[Sequence[float]], teacher_ious: Sequence[Sequence[float]]) -> list[tuple[int, float]]:
    """``(index, delta)`` of the reliable samples, ``delta`` descending, the earlier sample first on ties (deltas
    equal to 9 decimals: means of the same IoUs summed in another order differ in the last bits)."""
    deltas = [(i, disagreement(ious[i], teacher_ious[i])) for i in reliable(teacher_ious)]
    return sorted(deltas, key=lambda p: -round(p[1], 9))


def _check(ious: Sequence[Any], teacher_ious: Sequence[Any], k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(ious) != len(teacher_ious):
        raise ValueError(f"{len(ious)} student rows but {len(teacher_ious)} teacher rows")


@TVDF_SELECTORS.register("tvdf")
def tvdf_top(ious: Sequence[Sequence[float]], teacher_ious: Sequence[Sequence[float]], k: int, seed: int
             ) -> list[int]:
    """The ``k`` reliable samples with the largest ``delta`` (``seed`` unused)."""
    _check(ious, teacher_ious, k)
    return sorted(i for i, _ in _ranked(ious, teacher_ious)[:k])


@TVDF_SELECTORS.register("tvdf_even")
def tvdf_even(ious: Sequence[Sequence[float]], teacher_ious: Sequence[Sequence[float]], k: int, seed: int
              ) -> list[int]:
    """``k`` evenly spaced over the reliable samples sorted by ``delta`` descending (``seed`` unused)."""
    _check(ious, teacher_ious, k)
    ranked = [i for i, _ in _ranked(ious, teacher_ious)]
    if k >= len(ranked):
        return sorted(ranked)
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, k)).astype(int))
    return sorted(ranked[j] for j in picks)


def equal_quotas(sizes: Sequence[int], k: int) -> list[int]:
    """An equal share of ``k`` per bucket, a bucket holding fewer giving the rest to the others, again equally;
    a remainder goes to the last buckets first (the largest ``delta``).

    >>> equal_quotas([4, 4, 4, 4, 4], 10), equal_quotas([0, 1, 5, 5, 5], 10), equal_quotas([3, 3, 3, 3, 3], 7)
    ([2, 2, 2, 2, 2], [0, 1, 3, 3, 3], [1, 1, 1, 2, 2])
    """
    quotas = [0] * len(sizes)
    left = min(k, sum(sizes))
    while left:
        room = [b for b in range(len(sizes)) if quotas[b] < sizes[b]]
        share = left // len(room)
        if share == 0:
            for b in room[::-1][:left]:
                quotas[b] += 1
            break
        for b in room:
            add = min(share, sizes[b] - quotas[b])
            quotas[b] += add
            left -= add
    return quotas


def delta_buckets(deltas: Sequence[float], n_buckets: int = BUCKETS) -> list[int]:
    """The bucket of each ``delta``: ``n_buckets`` equal widths between the smallest and the largest, the last
    closed (all in bucket 0 when every ``delta`` is equal).

    >>> delta_buckets([-0.5, 0.0, 0.1, 0.45, 0.5])
    [0, 2, 3, 4, 4]
    """
    lo, hi = min(deltas), max(deltas)
    if hi == lo:
        return [0] * len(deltas)
    width = (hi - lo) / n_buckets
    return [min(n_buckets - 1, math.floor((d - lo) / width + 1e-9)) for d in deltas]


@TVDF_SELECTORS.register("tvdf_buckets")
def tvdf_buckets(ious: Sequence[Sequence[float]], teacher_ious: Sequence[Sequence[float]], k: int, seed: int
                 ) -> list[int]:
    """An equal share of ``k`` from each of 5 equal-width ``delta`` buckets, uniform inside each."""
    _check(ious, teacher_ious, k)
    ranked = sorted(_ranked(ious, teacher_ious))  # pool order inside each bucket
    if k >= len(ranked):
        return [i for i, _ in ranked]
    which = delta_buckets([d for _, d in ranked])
    members = [[i for (i, _), b in zip(ranked, which, strict=True) if b == bucket] for bucket in range(BUCKETS)]
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for group, quota in zip(members, equal_quotas([len(m) for m in members], k), strict=True):
        chosen += [group[j] for j in rng.choice(len(group), size=quota, replace=False)]
    return sorted(chosen)


@TVDF_SELECTORS.register("tvdf_gaussian")
def tvdf_gaussian(ious: Sequence[Sequence[float]], teacher_ious: Sequence[Sequence[float]], k: int, seed: int
                  ) -> list[int]:
    """``k`` drawn without replacement, weight ``exp(-(delta - 0.9)^2 / (2 * 0.2^2))``."""
    _check(ious, teacher_ious, k)
    ranked = sorted(_ranked(ious, teacher_ious))
    if k >= len(ranked):
        return [i for i, _ in ranked]
    w = np.array([math.exp(-((d - GAUSSIAN_CENTER) ** 2) / (2 * GAUSSIAN_SIGMA**2)) for _, d in ranked])
    drawn = np.random.RandomState(seed).choice(len(ranked), k, replace=False, p=w / w.sum())
    return sorted(ranked[j][0] for j in drawn)


# ----------------------------------------------------------------------------------------------- the command
def run_tvdf_select(cfg: Any) -> dict[str, Any]:
    """``timegrpo curriculum select --method tvdf...`` (:class:`timegrpo.curriculum.config.SelectConfig`): the
    pool, its scores with ``teacher_ious`` (``curriculum score --teacher``), the selector -> the selected samples
    (moment_detr, score fields and ``delta`` in ``meta``) and ``<out>.summary.json``; returns the summary."""
    import dataclasses
    import json
    from pathlib import Path

    from timegrpo.curriculum.select import join_scores, scored_meta
    from timegrpo.data.convert import write_moment_detr
    from timegrpo.data.formats import load_annotations
    from timegrpo.evaluate.config import require
    from timegrpo.evaluate.predictions import read_predictions, write_atomic

    require(cfg, "method", "annotations", "scores", "k", "out")
    samples, _ = load_annotations(cfg.annotations, cfg.format, on_bad=cfg.on_bad, durations=cfg.durations,
                                  video_dir=cfg.videos)
    rows, _ = read_predictions(cfg.scores)
    pool = join_scores(samples, rows, cfg.scores)
    bare = [r["qid"] for r in pool if not r.get("teacher_ious")]
    if bare:
        raise ValueError(f"{cfg.scores}: {len(bare)} rows have no teacher_ious (first: qid {bare[0]}); score the pool "
                         "with `timegrpo curriculum score --teacher TEACHER` for a teacher-guided selector")
    ious, teacher = [r["ious"] for r in pool], [r["teacher_ious"] for r in pool]
    chosen = TVDF_SELECTORS.get(cfg.method)(ious, teacher, cfg.k, cfg.seed)
    deltas = {i: disagreement(ious[i], teacher[i]) for i in reliable(teacher)}
    selected = [dataclasses.replace(samples[i], meta={**samples[i].meta, **scored_meta(pool[i]), "delta": deltas[i]})
                for i in chosen]
    out = write_moment_detr(selected, cfg.out)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    summary = {"method": cfg.method, "k": cfg.k, "seed": cfg.seed, "annotations": str(cfg.annotations),
               "scores": str(cfg.scores), "out": str(out), "unused_score_rows": len(rows) - len(pool),
               "pool": {"n": len(pool), "reliable": len(deltas), "mean_iou": mean([mean_iou(x) for x in ious]),
                        "mean_delta": mean(list(deltas.values()))},
               "selected": {"n": len(chosen), "mean_iou": mean([mean_iou(ious[i]) for i in chosen]),
                            "mean_delta": mean([deltas[i] for i in chosen])}}
    write_atomic(Path(out).with_suffix(".summary.json"), json.dumps(summary, indent=2) + "\n")
    return summary


def run_selector(cfg: Any) -> dict[str, Any]:
    """``timegrpo curriculum select`` for any registered selector: the teacher-guided ones of
    :data:`TVDF_SELECTORS` here, the others by :func:`timegrpo.curriculum.select.run_select`."""
    from timegrpo.curriculum.select import run_select

    return (run_tvdf_select if cfg.method in TVDF_SELECTORS else run_select)(cfg)
