"""Selectors: a scored pool -> the indices of the samples to train on, registered by name in :data:`SELECTORS`.

A selector is ``f(ious, k, seed) -> list[int]``: ``ious[i]`` are the IoUs of the ``n`` answers pool sample ``i``
got from ``timegrpo curriculum score``, ``k`` the budget, ``seed`` the draw's seed; it returns indices into the
pool in increasing order (the written file keeps the pool's order). The IoU of a sample is the mean of its
``ious`` (:func:`timegrpo.curriculum.difficulty.mean_iou`). Add one with ``SELECTORS.register(name, f)``.

- ``timerft`` (Time-R1, ``src/utils/process_data.py``): drop IoU 0, draw ``k`` without replacement with weight
  ``exp(-(IoU - 0.3)^2 / (2 * 0.2^2))``, as ``np.random.choice(n, k, replace=False, p=w / sum(w))`` after
  ``np.random.seed(seed)`` (a ``RandomState(seed)``, the same stream). Departure: with ``k`` >= the IoU > 0 pool it
  keeps all of it (the original raises).
- ``timerft_refilter`` (Time-R1's per-round refilter): keep ``0 < IoU <= 0.7``, sort by IoU descending (stable),
  take the rounded indices of ``linspace(0, n - 1, k)`` (both ends included, duplicates removed); all if fewer.
- ``dea_stratified`` (VideoTG-R1's budget): ``k`` drawn uniformly without replacement inside each DEA bucket
  (easy / medium / hard, :func:`timegrpo.curriculum.difficulty.difficulty_bucket`), the bucket quotas
  proportional to the bucket sizes by largest remainder (ties: easy, medium, hard). ``run_select`` gives every
  selector the pool left after the Boundary Reflection Agent's flagged samples are dropped (``meta``
  ``bra_flagged``, written by ``timegrpo curriculum reflect``); VideoTG-R1's budget is ``--fraction 0.1`` of the
  whole pool, flagged samples included in the count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from timegrpo.curriculum.difficulty import BUCKETS, difficulty_bucket, mean_iou
from timegrpo.registry import Registry

Selector = Callable[[Sequence[Sequence[float]], int, int], list[int]]
SELECTORS: Registry[Selector] = Registry("curriculum selector")


def timerft_weight(iou: float, mu: float = 0.3, sigma: float = 0.2) -> float:
    """TimeRFT's sampling weight ``exp(-(IoU - mu)^2 / (2 sigma^2))``.

    >>> timerft_weight(0.3), round(timerft_weight(0.5), 6), round(timerft_weight(0.1), 6)
    (1.0, 0.606531, 0.606531)
    """
    return math.exp(-((iou - mu) ** 2) / (2 * sigma**2))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


@SELECTORS.register("timerft")
def timerft(ious: Sequence[Sequence[float]], k: int, seed: int) -> list[int]:
    """Gaussian-weighted draw of ``k`` from the samples with IoU > 0 (see the module docstring)."""
    _check_k(k)
    pool = [i for i, x in enumerate(ious) if mean_iou(x) > 0]
    if k >= len(pool):
        return pool
    w = np.array([timerft_weight(mean_iou(ious[i])) for i in pool])
    drawn = np.random.RandomState(seed).choice(len(pool), k, replace=False, p=w / w.sum())
    return sorted(pool[j] for j in drawn)


@SELECTORS.register("timerft_refilter")
def timerft_refilter(ious: Sequence[Sequence[float]], k: int, seed: int) -> list[int]:
    """``k`` evenly spaced over the ``0 < IoU <= 0.7`` samples sorted by IoU descending (``seed`` unused:
    the choice is deterministic)."""
    _check_k(k)
    pool = sorted((i for i, x in enumerate(ious) if 0 < mean_iou(x) <= 0.7), key=lambda i: -mean_iou(ious[i]))
    if k >= len(pool):
        return sorted(pool)
    picks = np.unique(np.round(np.linspace(0, len(pool) - 1, k)).astype(int))
    return sorted(pool[j] for j in picks)


def stratified_quotas(sizes: Sequence[int], k: int) -> list[int]:
    """Split ``k`` over strata of ``sizes`` in proportion, by largest remainder (earlier stratum on ties).

    >>> stratified_quotas([5, 3, 2], 4), stratified_quotas([1, 1, 8], 3), stratified_quotas([2, 0, 1], 9)
    ([2, 1, 1], [0, 0, 3], [2, 0, 1])
    """
    total = sum(sizes)
    if k >= total:
        return list(sizes)
    exact = [k * n / total for n in sizes]
    quotas = [math.floor(x) for x in exact]
    order = sorted(range(len(sizes)), key=lambda b: (-(exact[b] - quotas[b]), b))
    for b in order[: k - sum(quotas)]:
        quotas[b] += 1
    return quotas


@SELECTORS.register("dea_stratified")
def dea_stratified(ious: Sequence[Sequence[float]], k: int, seed: int) -> list[int]:
    """``k`` samples stratified over the DEA buckets, uniform without replacement inside each
    (``numpy.random.default_rng(seed)``, buckets drawn in the order easy, medium, hard)."""
    _check_k(k)
    strata = {b: [i for i, x in enumerate(ious) if difficulty_bucket(x) == b] for b in BUCKETS}
    quotas = stratified_quotas([len(strata[b]) for b in BUCKETS], k)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for b, q in zip(BUCKETS, quotas, strict=True):
        chosen += [strata[b][j] for j in rng.choice(len(strata[b]), size=q, replace=False)]
    return sorted(chosen)


# ----------------------------------------------------------------------------------------------- the command
def join_scores(samples: Sequence[Any], rows: Sequence[dict[str, Any]], scores_path: str) -> list[dict[str, Any]]:
    """The scores row of each sample, in pool order; a sample without a row stops the run (name it, say how to
    finish the scores), a row without a sample is ignored (counted by the caller)."""
    by_qid: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_qid.setdefault(str(r["qid"]), r)
    missing = [s.qid for s in samples if s.qid not in by_qid]
    if missing:
        raise ValueError(f"{len(missing)} of {len(samples)} pool samples have no row in {scores_path} (first: qid "
                         f"{missing[0]}); rerun `timegrpo curriculum score` with the same --out (it resumes)")
    bad = [s.qid for s in samples if not by_qid[s.qid].get("ious")]
    if bad:
        raise ValueError(f"{scores_path}: the row of qid {bad[0]} has no 'ious' ({len(bad)} such rows)")
    return [by_qid[s.qid] for s in samples]


def scored_meta(row: dict[str, Any]) -> dict[str, Any]:
    """The score fields a selected sample keeps in ``meta``: the row without ``qid`` and ``completions``, plus
    ``iou`` (the mean) and ``difficulty_bucket``.

    >>> scored_meta({"qid": "1", "ious": [0.5, 0.25], "unparsed": 0, "completions": ["a", "b"]})
    {'ious': [0.5, 0.25], 'unparsed': 0, 'iou': 0.375, 'difficulty_bucket': 'medium'}
    """
    meta = {k: v for k, v in row.items() if k not in ("qid", "completions")}
    meta["iou"] = mean_iou(row["ious"])
    meta["difficulty_bucket"] = difficulty_bucket(row["ious"])
    return meta


def bra_kept(samples: Sequence[Any], drop_flagged: bool) -> list[int]:
    """Indices of the pool samples a selector may draw from: all, or (``drop_flagged``) those the Boundary
    Reflection Agent did not flag (``meta["bra_flagged"]`` true; samples without the key are kept)."""
    return [i for i, s in enumerate(samples) if not (drop_flagged and s.meta.get("bra_flagged") is True)]


def budget(cfg: Any, n_pool: int) -> int:
    """``k``, or ``round(fraction * n_pool)`` (at least 1) with ``n_pool`` the whole pool, flagged included.

    >>> from types import SimpleNamespace as NS
    >>> budget(NS(k=5, fraction=None), 700), budget(NS(k=None, fraction=0.1), 705), budget(NS(k=None, fraction=0.1), 4)
    (5, 70, 1)
    """
    return cfg.k if cfg.k is not None else max(1, round(cfg.fraction * n_pool))


def _stats(ious: Sequence[Sequence[float]], idx: Sequence[int]) -> dict[str, Any]:
    from collections import Counter

    means = [mean_iou(ious[i]) for i in idx]
    return {"n": len(idx), "mean_iou": sum(means) / len(means) if means else None,
            "iou_zero": sum(m == 0 for m in means),
            "buckets": dict(Counter(difficulty_bucket(ious[i]) for i in idx))}


def run_select(cfg: Any) -> dict[str, Any]:
    """``timegrpo curriculum select`` (:class:`timegrpo.curriculum.config.SelectConfig`): read the pool and its
    scores, drop the BRA-flagged samples (``drop_flagged``), run the selector on the rest with the budget
    (:func:`budget`), write the selected samples (moment_detr, the score fields in ``meta``) and
    ``<out>.summary.json`` (counts, the flagged samples dropped, buckets and mean IoU of the kept pool and of
    the selection); returns the summary. Scores are needed for the kept samples only."""
    import dataclasses
    import json
    from pathlib import Path

    from timegrpo.config.core import check
    from timegrpo.data.convert import write_moment_detr
    from timegrpo.data.formats import load_annotations
    from timegrpo.evaluate.config import require
    from timegrpo.evaluate.predictions import read_predictions, write_atomic

    require(cfg, "method", "annotations", "scores", "out")
    check(cfg.k is not None or cfg.fraction is not None, "missing", "--k or --fraction (the budget)")
    samples, _ = load_annotations(cfg.annotations, cfg.format, on_bad=cfg.on_bad, durations=cfg.durations,
                                  video_dir=cfg.videos)
    kept = [samples[i] for i in bra_kept(samples, cfg.drop_flagged)]
    k = budget(cfg, len(samples))
    rows, _ = read_predictions(cfg.scores)
    pool = join_scores(kept, rows, cfg.scores)
    ious = [r["ious"] for r in pool]
    chosen = SELECTORS.get(cfg.method)(ious, k, cfg.seed)
    selected = [dataclasses.replace(kept[i], meta={**kept[i].meta, **scored_meta(pool[i])}) for i in chosen]
    out = write_moment_detr(selected, cfg.out)
    summary = {"method": cfg.method, "k": k, "fraction": cfg.fraction, "seed": cfg.seed,
               "annotations": str(cfg.annotations), "scores": str(cfg.scores), "out": str(out),
               "n_annotations": len(samples), "bra_dropped": len(samples) - len(kept),
               "unused_score_rows": len(rows) - len(pool), "pool": _stats(ious, range(len(pool))),
               "selected": _stats(ious, chosen)}
    write_atomic(Path(out).with_suffix(".summary.json"), json.dumps(summary, indent=2) + "\n")
    return summary
