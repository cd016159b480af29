"""Evaluation protocols by name: how a prediction is read and how R1 is counted, so numbers sit beside a paper's.

* ``spec`` (default; SPEC section 0): the benchmark's own reader (the last ``<answer>`` block, the tolerant
  parser, ``--strict`` for Time-R1's training parser), IoU of the top-1 window (max over GT windows, invalid
  windows 0), R1@m counts IoU >= m (as the official Moment-DETR / QVHighlights code).
* ``time_r1``: Time-R1's evaluation scripts (``evaluate.py`` ``extract_answer`` and ``eval_all.py``
  ``compute_IoU`` / ``calc_score`` in ``xiaomi-research/time-r1``): the last lower-case ``number to|and number``
  ANYWHERE in the completion (:func:`timegrpo.parsing.parse_time_r1_eval`), no clamping, IoU =
  ``max(0, min(e) - max(s)) / max(0, max(e) - min(s))`` (a reversed prediction overlaps nothing: 0; an
  unparsed one scores 0), R1@m counts IoU > m, mIoU the mean x 100. Defined for temporal grounding only.
  Departures: a record with ``pred_relevant_windows`` and no completion is scored on its first window as given
  (Time-R1 always parses text); with several GT windows the max over them is taken (Time-R1's benchmarks have
  one); a zero-length prediction on a zero-length truth (0/0 in their code, NaN) scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from timegrpo.data.schema import Sample
from timegrpo.evaluate.benchmarks import Prediction, valid_window
from timegrpo.parsing import parse_time_r1_eval
from timegrpo.registry import Registry
from timegrpo.spans import as_windows, temporal_iou

#: ``(record or None, sample, strict, from_completion) -> Prediction``, as a benchmark's reader.
Reader = Callable[[dict[str, Any] | None, Sample, bool, bool], Prediction]


@dataclass(frozen=True)
class Protocol:
    """``read`` (None: the benchmark's own reader), ``iou(top1 or None, gt windows)``, whether R1 counts IoU > m
    (``above``), and the benchmarks it is defined for (None: any)."""

    read: Reader | None
    iou: Callable[[Any, Sequence[Sequence[float]]], float]
    above: bool
    benchmarks: tuple[str, ...] | None
    notes: str


PROTOCOLS: Registry[Protocol] = Registry("evaluation protocol")


def time_r1_iou(pred: Sequence[float] | None, gts: Sequence[Sequence[float]]) -> float:
    """Time-R1's ``compute_IoU`` for one prediction (max over GT windows; 0 for None or a 0/0).

    >>> time_r1_iou((0.0, 10.0), [(5.0, 15.0)]), time_r1_iou((10.0, 5.0), [(4.0, 12.0)]), time_r1_iou(None, [(0, 1)])
    (0.3333333333333333, 0.0, 0.0)
    """
    if pred is None:
        return 0.0
    ps, pe = float(pred[0]), float(pred[1])
    best = 0.0
    for gs, ge in as_windows(gts):
        inter = max(0.0, min(pe, ge) - max(ps, gs))
        union = max(0.0, max(pe, ge) - min(ps, gs))
        iou = inter / union if union > 0 else 0.0
        best = max(best, iou if math.isfinite(iou) else 0.0)
    return best


def read_time_r1(rec: dict[str, Any] | None, sample: Sample, strict: bool = False,
                 from_completion: bool = False) -> Prediction:
    """The prediction as Time-R1's scripts read it: the completion through :func:`parse_time_r1_eval`; without a
    completion, the first of ``pred_relevant_windows`` as given (a non-numeric or non-finite one: none)."""
    if rec is None:
        return Prediction([])
    text = rec.get("completion")
    if text is not None and (from_completion or "pred_relevant_windows" not in rec):
        span = parse_time_r1_eval(str(text))
        return Prediction([] if span is None else [[span[0], span[1], 1.0]])
    windows = rec.get("pred_relevant_windows") or []
    first = windows[0] if isinstance(windows, list) and windows else None
    ok = valid_window(first) or _reversed(first)
    return Prediction([] if ok is None else [[ok[0], ok[1], 1.0]], invalid=int(first is not None and ok is None))


def _reversed(w: Any) -> tuple[float, float] | None:
    """A finite window given end first: Time-R1's IoU scores it (0), so it is read, not counted invalid."""
    if isinstance(w, (list, tuple)) and len(w) >= 2 and valid_window([w[1], w[0]]) is not None:
        return float(w[0]), float(w[1])
    return None


PROTOCOLS.register("spec", Protocol(None, temporal_iou, False, None,
                                    "SPEC section 0: last <answer>, tolerant parser, R1 counts IoU >= m."))
PROTOCOLS.register("time_r1", Protocol(read_time_r1, time_r1_iou, True, ("grounding",),
                                       "Time-R1's eval scripts: last 'x to y' anywhere, R1 counts IoU > m."))
