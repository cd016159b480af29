"""Temporal spans: IoU, clipping, merging, and parsing a model's answer into a span.

Pure functions, doctested. The rewards (:mod:`timegrpo.rewards`) and the metrics (:mod:`timegrpo.metrics`)
call the same :func:`temporal_iou` (STYLE rule 4), so a training reward and an evaluation number can never
disagree about what an IoU is.

Answer parsing (SPEC section 1) has two modes:

* **strict** (``strict=True``) parses exactly as Time-R1 does (``parse_timestamp_output`` in
  ``xiaomi-research/time-r1`` ``main.py``, identical in ``www-Ye/Time-R1`` ``src/open_r1/grpo_video.py``):
  take all ``<answer>(.*?)</answer>`` blocks (dot matches newline) and keep the LAST; in it find all
  ``(\\d+\\.?\\d*) (to|and) (\\d+\\.?\\d*)`` (case-insensitive, exactly one space on each side) and keep the
  LAST; return the two floats as they are: no clamping, and ``start > end`` is returned unchanged.
* **tolerant** (the default) departs from that in these ways only, each shown in :func:`parse_answer`'s doctest:

  1. separators: ``to``/``and`` with any amount of whitespace (also none), and ``-``, ``–``, ``—``, ``~``;
  2. numbers: ``.5``, clock times ``m:ss``/``h:mm:ss`` (with optional decimals, ``1:05`` = 65 s) and an
     optional unit (``s``, ``sec``, ``secs``, ``second``, ``seconds``); a number glued to a letter or digit
     before it (``Qwen2.5``) is not read;
  3. a ``-`` right before the first number, not after a digit, is a minus sign (``-3 to 5`` is
     ``(-3, 5)``, clamped to ``(0, 5)``; Time-R1 would read ``3 to 5``);
  4. with a ``duration`` the span is clamped to ``[0, duration]``;
  5. ``start > end`` (as written, before clamping) is invalid: None;
  6. ``allow_bare=True`` reads the whole text when it has no ``<answer>`` block (off by default, as in Time-R1).

  Both modes take the LAST ``<answer>`` block and the LAST span in it, and fail (None) on a block with no span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Span = tuple[float, float]

#: Time-R1's answer block and span patterns (strict mode), verbatim.
STRICT_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
STRICT_SPAN_RE = re.compile(r"(\d+\.?\d*) (to|and) (\d+\.?\d*)", re.IGNORECASE)

_NUM = r"(?:\d+:){0,2}\d+(?:\.\d*)?|\.\d+"
_UNIT = r"(?:\s*(?:seconds?|secs?|s)\b)?"
_TOLERANT_SPAN_RE = re.compile(
    rf"(?<![\w.:])(?P<sign>(?<![\d.])-)?(?P<start>{_NUM}){_UNIT}"
    rf"\s*(?:to|and|-|–|—|~)\s*"
    rf"(?P<end>{_NUM}){_UNIT}(?![\d:])",
    re.IGNORECASE,
)


def _as_windows(gts: Sequence[float] | Sequence[Sequence[float]]) -> list[Span]:
    """Accept one window ``(s, e)`` or a list of windows ``[(s, e), ...]``."""
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
    return max((span_iou(pred, w) for w in _as_windows(gts)), default=0.0)


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
    return max((span_iop(pred, w) for w in _as_windows(gts)), default=0.0)


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


def last_answer_block(text: str) -> str | None:
    """The content of the LAST ``<answer>...</answer>`` block, or None when there is none.

    >>> last_answer_block("<answer>1 to 2</answer> then <answer>3 to 4</answer>")
    '3 to 4'
    >>> last_answer_block("no tags") is None
    True
    """
    blocks = STRICT_ANSWER_RE.findall(text)
    return blocks[-1] if blocks else None


def parse_time(token: str) -> float:
    """Seconds from ``12.5``, ``.5``, ``1:05`` (m:ss) or ``01:02:03.5`` (h:mm:ss).

    >>> parse_time("12.5"), parse_time("1:05"), parse_time("01:02:03.5"), parse_time(".5")
    (12.5, 65.0, 3723.5, 0.5)
    """
    total = 0.0
    for part in token.split(":"):
        total = total * 60.0 + float(part)
    return total


def _strict_span(text: str) -> Span | None:
    block = last_answer_block(text)
    if block is None:
        return None
    matches = STRICT_SPAN_RE.findall(block)
    if not matches:
        return None
    start, _, end = matches[-1]
    return float(start), float(end)


def find_spans(text: str) -> list[Span]:
    """Every span written in ``text`` in the tolerant forms, in order, unclamped (see the module docstring).

    >>> find_spans("from 1:05 to 1:20, or 12.5-30s, or 3 and 4")
    [(65.0, 80.0), (12.5, 30.0), (3.0, 4.0)]
    """
    out = []
    for m in _TOLERANT_SPAN_RE.finditer(text):
        start = parse_time(m["start"])
        out.append((-start if m["sign"] else start, parse_time(m["end"])))
    return out


def parse_answer(
    text: str, duration: float | None = None, *, strict: bool = False, allow_bare: bool = False
) -> Span | None:
    """The span ``(start, end)`` in seconds that a completion answers, or None when there is none.

    The LAST ``<answer>`` block, the LAST span in it. ``strict=True`` parses exactly as Time-R1
    (``duration`` and ``allow_bare`` are then ignored); the tolerant default's departures are listed
    in the module docstring.

    >>> parse_answer("<think>maybe 1 to 2</think><answer>12.54 to 17.83</answer>")
    (12.54, 17.83)
    >>> parse_answer("<answer>1 to 2</answer><answer>3 and 4, no: 5 to 6</answer>")
    (5.0, 6.0)
    >>> parse_answer("<answer>12.5-30</answer>"), parse_answer("<answer>12.5-30</answer>", strict=True)
    ((12.5, 30.0), None)
    >>> parse_answer("<answer>12.5 - 30.0 s</answer>"), parse_answer("<answer>1:05 to 1:20</answer>")
    ((12.5, 30.0), (65.0, 80.0))
    >>> parse_answer("<answer>01:02:03 to 01:02:04</answer>")
    (3723.0, 3724.0)
    >>> parse_answer("<answer>-3 to 50</answer>", 30.0), parse_answer("<answer>-3 to 50</answer>", strict=True)
    ((0.0, 30.0), (3.0, 50.0))
    >>> parse_answer("<answer>20 to 10</answer>"), parse_answer("<answer>20 to 10</answer>", strict=True)
    (None, (20.0, 10.0))
    >>> parse_answer("<answer>50 to 40</answer>", 30.0)  # reversed, even though both clamp to 30

    >>> parse_answer("<answer>12.5  to 30</answer>"), parse_answer("<answer>12.5  to 30</answer>", strict=True)
    ((12.5, 30.0), None)
    >>> parse_answer("12 to 15"), parse_answer("12 to 15", allow_bare=True)
    (None, (12.0, 15.0))
    """
    if strict:
        return _strict_span(text)
    block = last_answer_block(text)
    if block is None:
        if not allow_bare:
            return None
        block = text
    spans = find_spans(block)
    if not spans:
        return None
    start, end = spans[-1]
    return None if start > end else clip_span((start, end), duration)
