"""Temporal spans: IoU, IoP, clipping and merging. Pure functions, doctested.

The rewards (:mod:`timegrpo.rewards`) and the metrics (:mod:`timegrpo.metrics`) call the same
:func:`temporal_iou` (STYLE rule 4), so a training reward and an evaluation number can never disagree about
what an IoU is. Reading a span out of a completion is :mod:`timegrpo.parsing`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence

Span = tuple[float, float]


def as_windows(gts: Sequence[float] | Sequence[Sequence[float]]) -> list[Span]:
    """Ground-truth windows as a list of float pairs, from one window ``(s, e)`` or a list ``[(s, e), ...]``.

    >>> as_windows((1, 2)), as_windows([[0, 1.5], (3, 4)]), as_windows([])
    ([(1.0, 2.0)], [(0.0, 1.5), (3.0, 4.0)], [])
    """
    if len(gts) == 0:
        return []
    if isinstance(gts[0], (int, float)):
        return [(float(gts[0]), float(gts[1]))]  # type: ignore[arg-type]
    return [(float(w[0]), float(w[1])) for w in gts]  # type: ignore[index]


def span_iou(pred: Sequence[float], gt: Sequence[float]) -> float:
    """IoU of two spans: ``max(0, min(pe, ge) - max(ps, gs)) / (max(pe, ge) - min(ps, gs))``; 0 when the union is 0.

    Extra items after ``(s, e)`` (e.g. a confidence score) are ignored.

    >>> span_iou((0, 10), (5, 15))
    0.3333333333333333
    >>> span_iou((0, 1), (2, 3)), span_iou((3, 3), (3, 3))
    (0.0, 0.0)
    """
    ps, pe = float(pred[0]), float(pred[1])
    gs, ge = float(gt[0]), float(gt[1])
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = max(pe, ge) - min(ps, gs)
    return inter / union if union > 0 else 0.0


def temporal_iou(pred: Sequence[float] | None, gts: Sequence[float] | Sequence[Sequence[float]]) -> float:
    """Temporal IoU of ``pred = (s, e)`` with the ground truth: the max over several GT windows.

    ``gts`` is a list of windows ``[(s, e), ...]`` (a single ``(s, e)`` is accepted too). ``pred`` None
    (an unparsable answer) scores 0, as does an empty GT list. The union is 0 only when both are the same point: 0.

    >>> temporal_iou((0.0, 10.0), [(5.0, 15.0)])
    0.3333333333333333
    >>> temporal_iou((0.0, 10.0), [(20.0, 30.0), (0.0, 5.0)])
    0.5
    >>> temporal_iou(None, [(0.0, 5.0)]), temporal_iou((1.0, 2.0), [])
    (0.0, 0.0)
    """
    if pred is None:
        return 0.0
    return max((span_iou(pred, w) for w in as_windows(gts)), default=0.0)


def span_iop(pred: Sequence[float], gt: Sequence[float]) -> float:
    """Intersection over prediction (NExT-GQA's IoP): ``|pred & gt| / |pred|``.

    As in NExT-GQA's ``get_tIoU``: a point prediction scores 1 when it lies in ``[gs, ge]``, else 0, and a
    prediction with ``end < start`` scores 0.

    >>> span_iop((2, 6), (4, 10)), span_iop((5, 5), (4, 10)), span_iop((6, 2), (0, 10))
    (0.5, 1.0, 0.0)
    """
    ps, pe = float(pred[0]), float(pred[1])
    gs, ge = float(gt[0]), float(gt[1])
    if ps == pe:
        return 1.0 if gs <= ps <= ge else 0.0
    if pe < ps:
        return 0.0
    return max(0.0, min(pe, ge) - max(ps, gs)) / (pe - ps)


def temporal_iop(pred: Sequence[float] | None, gts: Sequence[float] | Sequence[Sequence[float]]) -> float:
    """:func:`span_iop` maxed over the GT windows (NExT-GQA); 0 for None or no window.

    >>> temporal_iop((2, 6), [(0, 3), (4, 10)])
    0.5
    """
    if pred is None:
        return 0.0
    return max((span_iop(pred, w) for w in as_windows(gts)), default=0.0)


def clip_span(span: Sequence[float], duration: float | None) -> Span:
    """Clamp both ends of ``span`` into ``[0, duration]`` (only below 0 when ``duration`` is None).

    >>> clip_span((-2.0, 40.0), 30.0), clip_span((5, 7), None), clip_span((-1, 3), None)
    ((0.0, 30.0), (5.0, 7.0), (0.0, 3.0))
    """
    hi = float("inf") if duration is None else float(duration)
    return (min(max(float(span[0]), 0.0), hi), min(max(float(span[1]), 0.0), hi))


def merge_spans(spans: Sequence[Sequence[float]]) -> list[Span]:
    """Sort spans by start and merge the ones that overlap or touch.

    >>> merge_spans([(5, 8), (0, 2), (1, 3), (8, 9)])
    [(0.0, 3.0), (5.0, 9.0)]
    >>> merge_spans([])
    []
    """
    merged: list[list[float]] = []
    for s, e in sorted((float(w[0]), float(w[1])) for w in spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def merged_iou(pred: Sequence[Sequence[float]], gts: Sequence[Sequence[float]], *, empty: float = 0.0) -> float:
    """IoU of two SETS of spans: ``|union(pred) & union(gts)| / |union(pred) | union(gts)|`` (the glue IoU).

    Each set is first merged (:func:`merge_spans`), so overlapping spans are not counted twice. This is
    VideoChat-R1's grounded-QA IoU (``iou_glue_reward`` in ``OpenGVLab/VideoChat-R1``
    ``src/open_r1/grpo_tasks.py``); when the union has length 0 it returns ``empty`` (VideoChat-R1 returns 1.0,
    our default is 0.0 like :func:`temporal_iou`). With one span on each side it equals :func:`span_iou`.

    >>> merged_iou([(0, 4), (6, 10)], [(2, 8)])
    0.4
    >>> merged_iou([(0, 4), (2, 6)], [(0, 6)]), merged_iou([], []), merged_iou([], [], empty=1.0)
    (1.0, 0.0, 1.0)
    """
    a, b = merge_spans(pred), merge_spans(gts)
    inter, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        inter += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    union = sum(e - s for s, e in a) + sum(e - s for s, e in b) - inter
    return inter / union if union > 0 else float(empty)
