"""The official QVHighlights evaluation (Moment-DETR ``standalone_eval/eval.py``), vectorised with numpy.

Reproduces, key for key and to the rounding, the ``brief`` dict of ``jayleicn/moment_detr``'s
``eval_submission``: moment retrieval (MR) R1@0.5/0.7 and mAP (IoU 0.5:0.05:0.95, also @0.5, @0.75, and by
ground-truth length) and highlight detection (HL) mAP and HIT@1 at Fair/Good/VeryGood. What it computes:

* **MR-R1@m**: the first predicted window against the GT window with the highest IoU (true union, first on
  ties), then IoU with the union taken as the hull ``max(ends) - min(starts)`` (the official "not the correct
  union though"; equal whenever the two overlap), IoU >= m, over the queries in the range.
* **MR-mAP**: per query, the first 10 predicted windows sorted by score (stable), greedily matched to GT
  windows (each GT once, the highest-IoU unmatched one first, a prediction below the threshold is a false
  positive), VOC-2011 interpolated AP (ActivityNet style); the mean over queries with at least one prediction,
  then over the 10 thresholds ("average").
* **Length ranges** short (0, 10], middle (10, 30], long (30, 150] seconds keep, per query, only the GT windows
  of that length (and the queries that keep one); "full" is every query with every window, unfiltered.
* **HL**: the GT clip scores are a ``(int(duration / 2), 3)`` array (relevant clips scored 0-4 by 3 raters);
  a clip is positive at Fair/Good/VeryGood when its score is >= 2/3/4. HIT@1: the top predicted clip is
  positive for at least one rater. HL-mAP: per query and rater, the predicted scores cut or zero-padded to the
  clip count, the average of the running-max-interpolated precision over the score levels that add a positive
  (``get_ap`` with sklearn's precision-recall curve; 0 when no clip is positive, 1 when all are); the mean.
* Every number is ``float(f"{100 * v:.2f}")``.

Departures: a query with no predicted window is a miss for R1 and AP 0 in the mAP mean (the official code
crashes in R1 and leaves it out of the mAP mean; ``empty_as_zero=False`` does the latter). No multiprocessing
(vectorised instead; same numbers). Ties between GT windows of exactly equal
IoU are broken by the highest index first, as numpy's insertion sort does for the official ``argsort()[::-1]``
(the official order can differ on machines where numpy sorts with SIMD).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MR_IOU_THRESHOLDS: tuple[float, ...] = tuple(float(f"{e:.2f}") for e in np.linspace(0.5, 0.95, 10))
MR_LENGTH_RANGES: dict[str, tuple[float, float]] = {
    "short": (0, 10),
    "middle": (10, 30),
    "long": (30, 150),
    "full": (0, 150),
}
HL_MIN_SCORES: dict[str, int] = {"Fair": 2, "Good": 3, "VeryGood": 4}
MAX_PRED_WINDOWS = 10
CLIP_LENGTH = 2.0


def _round(v: float) -> float:
    return float(f"{100 * v:.2f}")


def _pad(rows: Sequence[Sequence[Sequence[float]]], width: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged ``rows`` (each ``(n_i, >=cols)``) into ``(Q, width, cols)`` (NaN padded) and counts ``(Q,)``."""
    out = np.full((len(rows), max(width, 1), cols), np.nan)
    counts = np.zeros(len(rows), dtype=int)
    for q, row in enumerate(rows):
        if len(row):
            arr = np.asarray(row, dtype=float)[:width, :cols]
            out[q, : len(arr)] = arr
            counts[q] = len(arr)
    return out, counts


def _cross_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Official ``compute_temporal_iou_batch_cross`` (true union): ``pred (..., K, 2)``, ``gt (..., G, 2)`` -> ``(..., K, G)``."""
    ps, pe = pred[..., :, None, 0], pred[..., :, None, 1]
    gs, ge = gt[..., None, :, 0], gt[..., None, :, 1]
    inter = np.clip(np.minimum(pe, ge) - np.maximum(ps, gs), 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / ((pe - ps) + (ge - gs) - inter)


def _paired_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Official ``compute_temporal_iou_batch_paired`` (hull union, 0 where it is 0): ``(N, 2), (N, 2) -> (N,)``."""
    inter = np.maximum(0, np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0]))
    union = np.maximum(pred[:, 1], gt[:, 1]) - np.minimum(pred[:, 0], gt[:, 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _detection_ap(
    pred: np.ndarray, n_pred: np.ndarray, gt: np.ndarray, n_gt: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """AP per query and threshold, ``(Q, T)``: ``pred (Q, K, 3)`` [s, e, score], ``gt (Q, G, 2)``, NaN padded."""
    q_n, k_n = pred.shape[:2]
    score = np.where(np.arange(k_n)[None] < n_pred[:, None], pred[..., 2], -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")
    pred = np.take_along_axis(pred, order[..., None], axis=1)
    gt_valid = np.arange(gt.shape[1])[None] < n_gt[:, None]  # (Q, G)
    iou = np.where(gt_valid[:, None, :], _cross_iou(pred[..., :2], gt), -np.inf)  # (Q, K, G)
    gt_order = np.argsort(iou, axis=-1, kind="stable")[..., ::-1]  # highest IoU first; ties: highest index first
    iou_sorted = np.take_along_axis(iou, gt_order, axis=-1)
    t_n, g_n = len(thresholds), gt.shape[1]
    locked = np.zeros((q_n, t_n, g_n), dtype=bool)
    tp = np.zeros((q_n, t_n, k_n))
    rows = np.arange(q_n)[:, None]
    cols = np.arange(t_n)[None, :]
    for k in range(k_n):
        order_k = np.broadcast_to(gt_order[:, None, k, :], (q_n, t_n, g_n))
        with np.errstate(invalid="ignore"):
            below = iou_sorted[:, None, k, :] < thresholds[None, :, None]  # NaN IoU is not below (as official)
        stop = below | ~np.take_along_axis(locked, order_k, axis=-1)  # first GT that is below or free
        j = stop.argmax(-1)  # (Q, T)
        hit = stop.any(-1) & ~np.take_along_axis(below, j[..., None], axis=-1)[..., 0] & (k < n_pred)[:, None]
        g = np.take_along_axis(order_k, j[..., None], axis=-1)[..., 0]
        locked[rows, cols, g] |= hit
        tp[:, :, k] = hit
    real = (np.arange(k_n)[None] < n_pred[:, None])[:, None, :]  # (Q, 1, K)
    tp_c = np.cumsum(tp, axis=-1)
    fp_c = np.cumsum(real & (tp == 0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp_c / n_gt[:, None, None]
        prec = tp_c / (tp_c + fp_c)
    zeros, ones = np.zeros((q_n, t_n, 1)), np.ones((q_n, t_n, 1))
    mprec = np.concatenate([zeros, prec, zeros], axis=-1)
    mprec = np.maximum.accumulate(mprec[..., ::-1], axis=-1)[..., ::-1]
    mrec = np.concatenate([zeros, rec, ones], axis=-1)
    step = mrec[..., 1:] - mrec[..., :-1]
    terms = np.where(step != 0, step * mprec[..., 1:], 0.0)
    return np.cumsum(terms, axis=-1)[..., -1]  # sequential sum, as np.sum over the few non-zero terms


def _select_range(gts: list[np.ndarray], lo: float, hi: float) -> tuple[list[np.ndarray], np.ndarray]:
    """GT windows with ``lo < length <= hi`` per query, and which queries keep any (full range: all, unchanged)."""
    if (lo, hi) == MR_LENGTH_RANGES["full"]:
        return gts, np.ones(len(gts), dtype=bool)
    kept = []
    for g in gts:
        length = g[:, 1] - g[:, 0] if len(g) else np.zeros(0)
        kept.append(g[(lo < length) & (length <= hi)])
    return kept, np.array([len(g) > 0 for g in kept], dtype=bool)


def _mr_r1(first: np.ndarray, has_pred: np.ndarray, gts: list[np.ndarray]) -> dict[str, float]:
    """Official ``compute_mr_r1``: ``first (Q, 2)`` top windows (``has_pred`` False: a miss), ``gts`` per query."""
    if not len(gts):
        return {str(t): 0.0 for t in MR_IOU_THRESHOLDS}
    gt_pad, n_gt = _pad(gts, max(len(g) for g in gts), 2)
    iou = _cross_iou(first[:, None, :], gt_pad)[:, 0, :]  # (Q, G)
    iou = np.where(np.arange(gt_pad.shape[1])[None] < n_gt[:, None], iou, -np.inf)
    best = np.argmax(np.where(np.isnan(iou), np.inf, iou), axis=1)  # first max; a NaN wins, as in np.argmax
    paired = np.where(has_pred & (n_gt > 0), _paired_iou(first, gt_pad[np.arange(len(gts)), best]), 0.0)
    return {str(t): _round(float(np.mean(paired >= t))) for t in MR_IOU_THRESHOLDS}


def moment_retrieval_detail(
    pred_windows: Sequence[Sequence[Sequence[float]]],
    gt_windows: Sequence[Sequence[Sequence[float]]],
    *,
    max_pred_windows: int = MAX_PRED_WINDOWS,
    length_ranges: dict[str, tuple[float, float]] = MR_LENGTH_RANGES,
    empty_as_zero: bool = True,
) -> dict[str, dict[str, dict[str, float]]]:
    """Official MR metrics per length range: ``{range: {"MR-mAP": {"0.5": .., "average": ..}, "MR-R1": {..}}}``.

    ``pred_windows[i]``: query i's ranked ``[[s, e, score], ...]``; ``gt_windows[i]``: its ``[[s, e], ...]``.
    A query without any predicted window scores IoU 0 for R1 (the official code crashes) and AP 0 in the mAP
    mean; ``empty_as_zero=False`` leaves it out of the mAP mean instead, as the official code does.
    """
    if len(pred_windows) != len(gt_windows):
        raise ValueError(f"{len(pred_windows)} predictions for {len(gt_windows)} ground truths")
    thr = np.array(MR_IOU_THRESHOLDS)
    preds, n_pred = _pad(pred_windows, max_pred_windows, 3)
    preds[..., 2] = np.where(np.isnan(preds[..., 2]), 0.0, preds[..., 2])
    gts_all = [np.asarray(g, dtype=float).reshape(-1, 2) for g in gt_windows]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, (lo, hi) in length_ranges.items():
        gts, keep = _select_range(gts_all, lo, hi)
        idx = np.flatnonzero(keep)
        sub_gts = [gts[i] for i in idx]
        gt_pad, n_gt = _pad(sub_gts, max((len(g) for g in sub_gts), default=1), 2)
        has_pred = n_pred[idx] > 0
        ap = _detection_ap(preds[idx][has_pred], n_pred[idx][has_pred], gt_pad[has_pred], n_gt[has_pred], thr)
        if empty_as_zero and not has_pred.all():
            full_ap = np.zeros((len(idx), len(thr)))
            full_ap[has_pred] = ap
            ap = full_ap
        ap_thds = ap.mean(0) if len(ap) else np.zeros(len(thr))
        mr_map = {str(t): v for t, v in zip(MR_IOU_THRESHOLDS, ap_thds)}
        mr_map["average"] = np.mean(ap_thds)
        first = np.where(has_pred[:, None], preds[idx, 0, :2], 0.0)
        out[name] = {"MR-mAP": {k: _round(float(v)) for k, v in mr_map.items()}, "MR-R1": _mr_r1(first, has_pred, sub_gts)}
    return out


def saliency_labels(
    duration: float, relevant_clip_ids: Sequence[int], saliency_scores: Sequence[Sequence[float]],
    clip_length: float = CLIP_LENGTH,
) -> np.ndarray:
    """The official ``mk_gt_scores``: ``(int(duration / clip_length), 3)`` rater scores (0 outside the relevant clips).

    >>> saliency_labels(7.0, [1, 2], [[4, 3, 2], [1, 0, 4]]).tolist()
    [[0.0, 0.0, 0.0], [4.0, 3.0, 2.0], [1.0, 0.0, 4.0]]
    """
    full = np.zeros((int(duration / clip_length), 3))
    if len(relevant_clip_ids):
        full[np.asarray(relevant_clip_ids, dtype=int)] = np.asarray(saliency_scores, dtype=float)
    return full


def _ranking_ap(y_pred: np.ndarray, y_true: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Official ``get_ap`` per row and column: ``y_pred (Q, C)``, ``y_true (Q, C, R)`` binary, ``valid (Q, C)`` -> ``(Q, R)``."""
    order = np.argsort(np.where(valid, -y_pred, np.inf), axis=1, kind="stable")
    s = np.take_along_axis(y_pred, order, axis=1)
    ok = np.take_along_axis(valid, order, axis=1)
    y = np.take_along_axis(y_true, order[..., None], axis=1) * ok[..., None]
    nxt_differs = np.concatenate([s[:, 1:] != s[:, :-1], np.ones((len(s), 1), dtype=bool)], axis=1)
    nxt_valid = np.concatenate([ok[:, 1:], np.zeros((len(s), 1), dtype=bool)], axis=1)
    end = ok & (nxt_differs | ~nxt_valid)  # last item of each group of equal scores
    tps = np.cumsum(y, axis=1)  # (Q, C, R)
    prec = tps / np.arange(1, s.shape[1] + 1)[None, :, None]
    interp = np.maximum.accumulate(np.where(end[..., None], prec, -np.inf)[:, ::-1], axis=1)[:, ::-1]
    end_tps = np.where(end[..., None], tps, 0)
    prev_end_tps = np.concatenate([np.zeros_like(tps[:, :1]), np.maximum.accumulate(end_tps, axis=1)[:, :-1]], axis=1)
    sel = end[..., None] & (tps > prev_end_tps)
    with np.errstate(invalid="ignore"):
        ap = np.where(sel, interp, 0.0).sum(1) / sel.sum(1)
    n_pos, n_valid = y.sum(1), ok.sum(1)[:, None]
    ap = np.where(n_pos == 0, 0.0, ap)
    return np.where((n_pos == n_valid) & (n_valid > 0), 1.0, ap)


def highlight_detail(
    pred_saliency: Sequence[Sequence[float] | None], gt_scores: Sequence[np.ndarray]
) -> dict[str, dict[str, float]]:
    """Official HL metrics: ``{"HL-min-Fair": {"HL-mAP": .., "HL-Hit1": ..}, ...Good, ...VeryGood}``.

    ``pred_saliency[i]``: one score per 2 s clip of query i's video (None: no prediction, scores 0 and is
    counted by the caller); ``gt_scores[i]``: :func:`saliency_labels` of query i.
    """
    n = len(gt_scores)
    width = max([len(g) for g in gt_scores] + [len(p) for p in pred_saliency if p is not None] + [1])
    raw = np.full((n, width), -np.inf)
    adj = np.zeros((n, width))  # cut / zero-padded to the clip count, as the official compute_ap_from_tuple
    valid = np.arange(width)[None] < np.array([len(g) for g in gt_scores])[:, None]
    labels = np.zeros((n, width, 3))
    has = np.array([p is not None and len(p) > 0 for p in pred_saliency], dtype=bool)
    for q, (p, g) in enumerate(zip(pred_saliency, gt_scores)):
        labels[q, : len(g)] = g
        if p is not None and len(p):
            raw[q, : len(p)] = p
            adj[q, : min(len(p), len(g))] = np.asarray(p, dtype=float)[: len(g)]
    top = np.argmax(raw, axis=1)
    out = {}
    for name, min_score in HL_MIN_SCORES.items():
        binary = (labels >= min_score).astype(float) * valid[..., None]
        hit_rows = np.where((top < valid.sum(1)) & has, binary[np.arange(n), top].max(1), 0.0)
        ap = np.where(has[:, None], _ranking_ap(adj, binary, valid), 0.0)
        out[f"HL-min-{name}"] = {"HL-mAP": _round(float(np.mean(ap))), "HL-Hit1": _round(float(np.mean(hit_rows)))}
    return out


def qvhighlights_brief(mr: dict[str, Any] | None, hl: dict[str, Any] | None) -> dict[str, float]:
    """The official ``brief`` dict, in its key order: the MR keys sorted, then HL Fair/Good/VeryGood mAP, Hit1."""
    brief: dict[str, float] = {}
    if mr is not None:
        mr_keys = {
            "MR-full-mAP": mr["full"]["MR-mAP"]["average"],
            "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
            "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
            "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
            "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
            "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
            "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
            "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"],
        }
        brief.update(sorted(mr_keys.items()))
    if hl is not None:
        for level, vals in hl.items():
            for sub, v in vals.items():
                brief[f"{level}-{sub.split('-')[1]}"] = v
    return brief


def qvhighlights_metrics(
    pred_windows: Sequence[Sequence[Sequence[float]]] | None,
    gt_windows: Sequence[Sequence[Sequence[float]]],
    pred_saliency: Sequence[Sequence[float] | None] | None = None,
    gt_scores: Sequence[np.ndarray] | None = None,
) -> dict[str, float]:
    """The official brief metrics (``MR-full-mAP``, ..., ``HL-min-VeryGood-Hit1``), queries aligned by index.

    MR keys need ``pred_windows``; HL keys need ``pred_saliency`` and ``gt_scores`` (:func:`saliency_labels`).
    """
    mr = moment_retrieval_detail(pred_windows, gt_windows) if pred_windows is not None else None
    hl = highlight_detail(pred_saliency, gt_scores) if pred_saliency is not None and gt_scores is not None else None
    return qvhighlights_brief(mr, hl)
