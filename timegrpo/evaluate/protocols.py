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
* ``timelens``: TimeLens-Bench's evaluation (TencentARC/TimeLens ``evaluation/eval_dataloader.py`` and
  ``compute_metrics.py``, ``timelens/utils.py`` ``extract_time`` / ``iou``): the FIRST time pair written in the
  completion (:func:`parse_timelens`: clock times, else ``a - b``, else ``a to b``, else any two numbers), each end
  rounded to whole seconds as their inference script stores it (Python's ``round``, half to even), IoU =
  ``max(0, min(e) - max(s)) / (max(e) - min(s))`` against the FIRST ground-truth window (TimeLens-Bench has one),
  a prediction with start >= end scores 0 (so does an unparsed one), R1@m counts IoU >= m, mIoU the mean x 100.
  Departures: a record with ``pred_relevant_windows`` and no completion is scored on its first window, rounded
  the same way (their metric script takes given ``timestamps`` as they are; theirs come rounded from inference);
  a 0/0 (zero-length truth and prediction at the same point; a ZeroDivisionError in their script) scores 0.
"""

from __future__ import annotations

import math
import re
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


def first_window_reader(parse: Callable[[str], tuple[float, float] | None],
                        snap: Callable[[float], float] = float) -> Reader:
    """A protocol's reader of a predictions line: the completion through ``parse`` (when there is one and either
    ``from_completion`` or no ``pred_relevant_windows``), else the first of ``pred_relevant_windows`` as given (a
    non-numeric or non-finite one: none, counted invalid; a reversed one is read, its IoU is 0); both ends then go
    through ``snap``."""

    def read(rec: dict[str, Any] | None, sample: Sample, strict: bool = False,
             from_completion: bool = False) -> Prediction:
        if rec is None:
            return Prediction([])
        text = rec.get("completion")
        if text is not None and (from_completion or "pred_relevant_windows" not in rec):
            span = parse(str(text))
            return Prediction([] if span is None else [[snap(span[0]), snap(span[1]), 1.0]])
        windows = rec.get("pred_relevant_windows") or []
        first = windows[0] if isinstance(windows, list) and windows else None
        ok = valid_window(first) or _reversed(first)
        return Prediction([] if ok is None else [[snap(ok[0]), snap(ok[1]), 1.0]],
                          invalid=int(first is not None and ok is None))

    return read


#: The prediction as Time-R1's scripts read it: the completion through :func:`parse_time_r1_eval`.
read_time_r1 = first_window_reader(parse_time_r1_eval)


def _reversed(w: Any) -> tuple[float, float] | None:
    """A finite window given end first: Time-R1's IoU scores it (0), so it is read, not counted invalid."""
    if isinstance(w, (list, tuple)) and len(w) >= 2 and valid_window([w[1], w[0]]) is not None:
        return float(w[0]), float(w[1])
    return None


# ----------------------------------------------------------------------------------------------- TimeLens

_CLOCK = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?\b")
_DASH_PAIR = re.compile(r"(\d+\.?\d*)\s*-\s*(\d+\.?\d*)")
_TO_PAIR = re.compile(r"(\d+\.?\d*)\s+to\s+(\d+\.?\d*)")
_NUMBER = re.compile(r"\b\d+\.\d+\b|\b\d+\b")


def _clock_seconds(token: str) -> float:
    total = 0.0
    for part in token.split(":"):
        total = total * 60.0 + float(part)
    return total


def parse_timelens(text: str) -> tuple[float, float] | None:
    """The first time pair of an answer, as TimeLens's ``extract_time`` finds pairs (lower-cased text), tried in
    order until one kind is present: clock times (``m:ss``, ``h:mm:ss``, optional decimals) taken two by two;
    ``a - b``; ``a to b``; any two numbers. Unclamped, a reversed pair kept. None when no pair is written.

    >>> parse_timelens("The event happens in 12.5 - 17.8 seconds, or 1 - 2."), parse_timelens("from 0:05 to 1:02.5")
    ((12.5, 17.8), (5.0, 62.5))
    >>> parse_timelens("<think>3 to 9?</think><answer>3.5 - 9</answer>"), parse_timelens("Start 30 s, end 10 s")
    ((3.5, 9.0), (30.0, 10.0))
    >>> parse_timelens("at 4 seconds"), parse_timelens("at 0:05.5")
    (None, (0.0, 5.5))
    """
    text = text.lower()
    clocks = _CLOCK.findall(text)
    if len(clocks) >= 2:  # a single clock time makes no pair: the next kinds are tried (it is read as numbers)
        return _clock_seconds(clocks[0]), _clock_seconds(clocks[1])
    for pattern in (_DASH_PAIR, _TO_PAIR):
        m = pattern.search(text)
        if m is not None:
            return float(m.group(1)), float(m.group(2))
    numbers = _NUMBER.findall(text)
    return (float(numbers[0]), float(numbers[1])) if len(numbers) >= 2 else None


def timelens_iou(pred: Sequence[float] | None, gts: Sequence[Sequence[float]]) -> float:
    """TimeLens's ``iou(gt, pred)`` against the FIRST ground-truth window: ``max(0, min(e) - max(s)) /
    (max(e) - min(s))``; 0 when there is no prediction, when start >= end, or for a 0/0.

    >>> timelens_iou((2.0, 8.0), [(4.0, 10.0), (2.0, 8.0)]), timelens_iou((9.0, 3.0), [(0, 10)])
    (0.5, 0.0)
    >>> timelens_iou((5.0, 5.0), [(5.0, 5.0)]), timelens_iou(None, [(0, 1)])
    (0.0, 0.0)
    """
    windows = as_windows(gts)
    if pred is None or not windows:
        return 0.0
    ps, pe = float(pred[0]), float(pred[1])
    gs, ge = windows[0]
    if ps >= pe:
        return 0.0
    union = max(pe, ge) - min(ps, gs)
    return max(0.0, min(pe, ge) - max(ps, gs)) / union if union > 0 else 0.0


#: The prediction as TimeLens's inference stores it: the first pair of the completion, rounded to whole seconds.
read_timelens = first_window_reader(parse_timelens, snap=lambda x: float(round(x)))


PROTOCOLS.register("spec", Protocol(None, temporal_iou, False, None,
                                    "SPEC section 0: last <answer>, tolerant parser, R1 counts IoU >= m."))
PROTOCOLS.register("time_r1", Protocol(read_time_r1, time_r1_iou, True, ("grounding",),
                                       "Time-R1's eval scripts: last 'x to y' anywhere, R1 counts IoU > m."))
PROTOCOLS.register("timelens", Protocol(read_timelens, timelens_iou, False, ("grounding",),
                                        "TimeLens-Bench's eval: first time pair, whole seconds, start >= end "
                                        "scores 0, R1 counts IoU >= m."))
