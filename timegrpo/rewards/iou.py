"""IoU rewards: ``iou``, ``tiou`` (Time-R1's timestamp-aware IoU) and ``glue_iou`` (merged multi-span IoU).

All three parse with :mod:`timegrpo.parsing` and score with :mod:`timegrpo.spans`' IoU functions, the ones the
metrics use. ``strict=True`` reproduces the original code's parsing exactly; the default is the tolerant parser.
``iou`` and ``tiou`` report what they parsed through ``log_extra`` (:func:`report_spans`): ``pred_start``,
``pred_end`` and the plain temporal ``iou`` of that span, so a trainer logs them without parsing again; ``glue_iou``
reports ``pred_spans`` and its merged ``iou``.

Where we depart from Time-R1 (``iou_timestamp_reward`` / ``iou_timestamp_reward_v2`` in
``xiaomi-research/time-r1`` ``main.py``; the latter is its ``iou_v2``, our ``tiou``):

* several ground-truth windows: the max over them (Time-R1 has exactly one);
* a parsed span whose union with the ground truth is 0 (both the same point) scores 0; Time-R1 reads an
  unset (or the previous sample's) ``iou`` variable there;
* tolerant mode clamps the prediction into ``[0, duration]`` before scoring, so ``tiou``'s two factors stay in
  ``[0, 1]``; strict mode does not clamp (a prediction past ``2 * duration`` can make Time-R1's ``tiou`` negative).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from timegrpo.parsing import parse_answer, parse_glue
from timegrpo.rewards.base import LogExtra, column, completion_text, register_reward
from timegrpo.spans import Span, as_windows, merged_iou, span_iou, temporal_iou


def _duration(value: Any, i: int, reward: str, *, required: bool) -> float | None:
    if value is None or (isinstance(value, (int, float)) and value <= 0):
        if required:
            raise ValueError(f"sample {i} has duration {value!r}; reward {reward!r} needs a positive duration")
        return None
    return float(value)


def tiou_score(pred: Span | None, gts: Sequence[Sequence[float]], duration: float) -> float:
    """Time-R1's timestamp-aware IoU, max over the GT windows:
    ``IoU * (1 - |gs/D - ps/D|) * (1 - |ge/D - pe/D|)``; 0 for None.

    The normalised differences are computed as Time-R1 does (each end divided by D, then subtracted). An
    unclamped prediction past ``2 * D`` can make it negative, as in Time-R1 (the tolerant parser clamps).

    >>> tiou_score((10.0, 20.0), [(10.0, 30.0)], 100.0)
    0.45
    >>> tiou_score(None, [(0, 1)], 10.0), tiou_score((0, 10), [(0, 10), (50, 60)], 100.0)
    (0.0, 1.0)
    """
    if pred is None:
        return 0.0
    ps, pe, d = float(pred[0]), float(pred[1]), float(duration)
    scores = [
        span_iou((ps, pe), (gs, ge)) * (1 - abs(1.0 * gs / d - 1.0 * ps / d)) * (1 - abs(1.0 * ge / d - 1.0 * pe / d))
        for gs, ge in as_windows(gts)
    ]
    return max(scores, default=0.0)


def report_spans(log_extra: LogExtra | None, preds: Sequence[Span | None], windows: Sequence[Any]) -> None:
    """Report the parsed spans through ``log_extra``: ``pred_start`` and ``pred_end`` (None when unparsed) and
    ``iou``, the plain :func:`temporal_iou` of that span (0.0 when unparsed). A sample without ground-truth
    windows (the reward does not apply, nothing was parsed) reports None in all three. No-op without ``log_extra``.

    >>> got = {}
    >>> report_spans(lambda k, v: got.update({k: v}), [(2.0, 6.0), None, None], [[[4, 8]], [[4, 8]], []])
    >>> got
    {'pred_start': [2.0, None, None], 'pred_end': [6.0, None, None], 'iou': [0.3333333333333333, 0.0, None]}
    """
    if log_extra is None:
        return
    log_extra("pred_start", [None if p is None else p[0] for p in preds])
    log_extra("pred_end", [None if p is None else p[1] for p in preds])
    log_extra("iou", [temporal_iou(p, gts) if gts else None for p, gts in zip(preds, windows, strict=True)])


def _span_reward(name: str, completions: Sequence[Any], columns: dict[str, Any],
                 score: Callable[[Span | None, Any, float | None], float], *, duration_required: bool, strict: bool,
                 allow_bare: bool, log_extra: LogExtra | None) -> list[float | None]:
    """Parse each completion's span and ``score(pred, windows, duration)`` it; None where a sample has no
    ground-truth window. The tolerant parser clamps to the duration; the strict one never does."""
    n = len(completions)
    windows = column(columns, "windows", n, name)
    durations = column(columns, "duration", n, name, required=duration_required)
    out: list[float | None] = []
    preds: list[Span | None] = []
    for i, (c, gts, dur) in enumerate(zip(completions, windows, durations)):
        if not gts:
            preds.append(None)
            out.append(None)
            continue
        d = None if strict and not duration_required else _duration(dur, i, name, required=duration_required)
        pred = parse_answer(completion_text(c), None if strict else d, strict=strict, allow_bare=allow_bare)
        preds.append(pred)
        out.append(score(pred, gts, d))
    report_spans(log_extra, preds, windows)
    return out


@register_reward("iou")
def iou_reward(
    completions: Sequence[Any], *, strict: bool = False, allow_bare: bool = False,
    log_extra: LogExtra | None = None, **columns: Any
) -> list[float | None]:
    """Plain temporal IoU of the parsed answer with the ground truth (max over windows); 0 when unparsable.

    Columns: ``windows`` (required), ``duration`` (optional; the tolerant parser clamps to it).
    A sample with no ground-truth window gets None (not applicable). Reports :func:`report_spans`.

    >>> iou_reward(["<answer>2 to 6</answer>", "<answer>2 and 6</answer>"], windows=[[[4, 8]], [[4, 8]]])
    [0.3333333333333333, 0.3333333333333333]
    """
    return _span_reward("iou", completions, columns, lambda pred, gts, d: temporal_iou(pred, gts),
                        duration_required=False, strict=strict, allow_bare=allow_bare, log_extra=log_extra)


@register_reward("tiou")
def tiou_reward(
    completions: Sequence[Any], *, strict: bool = False, allow_bare: bool = False,
    log_extra: LogExtra | None = None, **columns: Any
) -> list[float | None]:
    """Time-R1's timestamp-aware IoU (:func:`tiou_score`); 0 when unparsable.

    Columns: ``windows`` and ``duration`` (both required; a sample without a positive duration is an error).
    Reports :func:`report_spans` (the plain IoU of the span it parsed, not the tIoU).

    >>> tiou_reward(["<answer>10 to 20</answer>"], windows=[[[10, 30]]], duration=[100.0])
    [0.45]
    """
    return _span_reward("tiou", completions, columns, tiou_score, duration_required=True, strict=strict,
                        allow_bare=allow_bare, log_extra=log_extra)


# --- glue IoU -------------------------------------------------------------------------------------------


@register_reward("glue_iou")
def glue_iou_reward(completions: Sequence[Any], *, strict: bool = False, log_extra: LogExtra | None = None,
                    **columns: Any) -> list[float | None]:
    """Merged multi-span IoU (:func:`timegrpo.spans.merged_iou`) of the ``<glue>`` spans with ALL GT windows.

    VideoChat-R1's ``iou_glue_reward``: both span sets are merged (overlaps counted once), then
    ``|P & G| / |P | G|``. Departures in tolerant mode: the last ``<glue>`` block instead of the first, a looser
    grammar (:func:`timegrpo.parsing.parse_glue`), clamping, and 0 instead of 1 when both sets have zero length.
    Columns: ``windows`` (required), ``duration`` (optional, for clamping). 0 when absent or invalid;
    None for a sample without ground-truth windows. Reports through ``log_extra``: ``pred_spans`` (the spans
    :func:`timegrpo.parsing.parse_glue` read, ``[[s, e], ...]``; None when it read none) and ``iou`` (the reward).

    >>> got = {}
    >>> glue_iou_reward(["<glue>[(0, 4), (6, 10)]</glue>", "<glue>oops</glue>"], windows=[[[2, 8]], [[2, 8]]],
    ...                 log_extra=lambda k, v: got.update({k: v}))
    [0.4, 0.0]
    >>> got
    {'pred_spans': [[[0.0, 4.0], [6.0, 10.0]], []], 'iou': [0.4, 0.0]}
    """
    n = len(completions)
    windows = column(columns, "windows", n, "glue_iou")
    durations = column(columns, "duration", n, "glue_iou", required=False)
    out: list[float | None] = []
    parsed: list[list[list[float]] | None] = []
    for i, (c, gts, dur) in enumerate(zip(completions, windows, durations)):
        if not gts:
            out.append(None)
            parsed.append(None)
            continue
        d = None if strict else _duration(dur, i, "glue_iou", required=False)
        spans = parse_glue(completion_text(c), d, strict=strict)
        parsed.append(None if spans is None else [[float(s), float(e)] for s, e in spans])
        out.append(0.0 if spans is None else merged_iou(spans, as_windows(gts), empty=1.0 if strict else 0.0))
    if log_extra is not None:
        log_extra("pred_spans", parsed)
        log_extra("iou", list(out))
    return out
