"""Grounded question answering metrics: NExT-GQA and ReXTime (SPEC section 0).

Both score the top-1 predicted span with :func:`timegrpo.spans.temporal_iou` (max over the GT windows, the
hull union, which equals each official code's IoU on every non-degenerate pair) and the answer with a
per-question correctness flag (see :func:`timegrpo.parsing.parse_letter`). All values are percentages,
unrounded (the official scripts print 1 decimal for NExT-GQA, 2 for ReXTime's mIoU/R1).

* NExT-GQA (``doc-doc/NExT-GQA`` ``code/TempGQA/eval_ground.py``): per question the max IoU and the max IoP
  (:func:`timegrpo.spans.temporal_iop`) over its GT windows; ``mIoP``, ``IoP@0.3``, ``IoP@0.5``, ``mIoU``,
  ``IoU@0.3``, ``IoU@0.5`` (>=), ``Acc@GQA`` = answer right AND IoP >= 0.5, and ``Acc@QA`` = answer right.
* ReXTime (``ReXTime/ReXTime`` ``evaluation/rextime_eval.py``): ``mIoU``, ``R1@0.3``, ``R1@0.5`` (>=), ``Acc``
  (answer right), ``Acc@IoU>=0.5`` (answer right AND IoU >= 0.5).

An unparsable span (None) scores IoU/IoP 0; an unparsable answer counts as wrong (``correct[i]`` False).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from timegrpo.spans import temporal_iop, temporal_iou


def _pct(mask: np.ndarray) -> float:
    return float(100.0 * np.mean(mask)) if mask.size else 0.0


def nextgqa_metrics(
    preds: Sequence[Sequence[float] | None],
    windows: Sequence[Sequence[Sequence[float]]],
    correct: Sequence[bool] | None = None,
) -> dict[str, float]:
    """NExT-GQA grounding (and, with ``correct``, QA) metrics over aligned per-question lists.

    >>> m = nextgqa_metrics([(2, 6), (0, 10), None], [[(4, 10)], [(0, 5)], [(0, 1)]], [True, True, False])
    >>> {k: round(v, 2) for k, v in m.items()}
    {'mIoP': 33.33, 'IoP@0.3': 66.67, 'IoP@0.5': 66.67, 'mIoU': 25.0, 'IoU@0.3': 33.33, 'IoU@0.5': 33.33, 'Acc@GQA': 66.67, 'Acc@QA': 66.67}
    """
    iou = np.array([temporal_iou(p, w) for p, w in zip(preds, windows)], dtype=float)
    iop = np.array([temporal_iop(p, w) for p, w in zip(preds, windows)], dtype=float)
    out = {
        "mIoP": float(100.0 * iop.mean()) if iop.size else 0.0,
        "IoP@0.3": _pct(iop >= 0.3),
        "IoP@0.5": _pct(iop >= 0.5),
        "mIoU": float(100.0 * iou.mean()) if iou.size else 0.0,
        "IoU@0.3": _pct(iou >= 0.3),
        "IoU@0.5": _pct(iou >= 0.5),
    }
    if correct is not None:
        ok = np.array(correct, dtype=bool)
        out["Acc@GQA"] = _pct(ok & (iop >= 0.5))
        out["Acc@QA"] = _pct(ok)
    return out


def rextime_metrics(
    preds: Sequence[Sequence[float] | None],
    windows: Sequence[Sequence[Sequence[float]]],
    correct: Sequence[bool] | None = None,
) -> dict[str, float]:
    """ReXTime metrics over aligned per-question lists.

    >>> m = rextime_metrics([(0, 10), (0, 4)], [[(0, 10)], [(0, 10)]], [False, True])
    >>> m
    {'mIoU': 70.0, 'R1@0.3': 100.0, 'R1@0.5': 50.0, 'Acc': 50.0, 'Acc@IoU>=0.5': 0.0}
    """
    iou = np.array([temporal_iou(p, w) for p, w in zip(preds, windows)], dtype=float)
    out = {
        "mIoU": float(100.0 * iou.mean()) if iou.size else 0.0,
        "R1@0.3": _pct(iou >= 0.3),
        "R1@0.5": _pct(iou >= 0.5),
    }
    if correct is not None:
        ok = np.array(correct, dtype=bool)
        out["Acc"] = _pct(ok)
        out["Acc@IoU>=0.5"] = _pct(ok & (iou >= 0.5))
    return out
