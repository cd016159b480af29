"""VideoTG-R1's Boundary Reflection Agent (BRA): the pure rules that call a sample partially annotated.

The agent shows a frozen video LLM the video with the annotated window's frames replaced by black frames
(:func:`hidden_frames`: exactly the frames at ``s <= t <= e``; their number, timestamps and the duration stay)
and asks where else the event happens. An answer flags the sample when its ranges, outside the annotated window
widened by ``tol = max(1 s, 0.05 D)`` on each side (``D`` the duration), cover at least ``max(2 s, 0.1 (e - s))``
seconds in total (:func:`is_partially_annotated`; SPEC section 2, the thresholds are ours). Ranges are clipped to
``[0, D]`` and merged before they are measured, so overlapping answers are not counted twice. A sample with
several annotated windows has all of them hidden and is flagged only when the rule holds against each window
(:func:`flags`).

Two variants (:data:`VARIANTS`), each ``samples`` (3) sampled answers per query:

- ``instruction`` (the paper's): the model is asked for the other ranges or ``none`` (prompt template
  ``boundary_reflection``, answers read by :func:`timegrpo.parsing.parse_ranges`); the sample is flagged when at
  least ``agree`` answers flag it (``agree`` 1: any answer; 2: VideoTG-R1's optional 2-of-3 agreement).
- ``grounding`` (ours, for models that do not follow that instruction, such as the tiny demo model): the model is
  asked the original grounding question on the blacked-out video (:func:`timegrpo.parsing.parse_answer`); the
  sample is flagged when ``agree`` of the sampled windows agree with each other (pairwise IoU >= ``min_iou``,
  0.5) and each of them flags the sample on its own (:func:`grounding_verdict`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from timegrpo.curriculum.masking import black_out, inside_windows
from timegrpo.parsing import parse_answer, parse_ranges
from timegrpo.registry import Registry
from timegrpo.spans import merge_spans, span_iou


def tolerance(duration: float) -> float:
    """``max(1 s, 0.05 D)``.

    >>> tolerance(10.0), tolerance(60.0)
    (1.0, 3.0)
    """
    return max(1.0, 0.05 * duration)


def min_outside(window: Sequence[float]) -> float:
    """The outside length that flags a sample: ``max(2 s, 0.1 (e - s))``.

    >>> min_outside((0.0, 10.0)), min_outside((0.0, 40.0))
    (2.0, 4.0)
    """
    return max(2.0, 0.1 * (window[1] - window[0]))


def outside_length(window: Sequence[float], ranges: Sequence[Sequence[float]], duration: float) -> float:
    """Seconds of ``ranges`` (clipped to ``[0, D]``, merged) outside ``[s - tol, e + tol]``.

    >>> outside_length((10.0, 20.0), [(0.0, 5.0), (4.0, 9.5), (15.0, 25.0)], 40.0)
    11.0
    """
    s, e = window
    tol = tolerance(duration)
    lo, hi = s - tol, e + tol
    clipped = [(max(0.0, a), min(duration, b)) for a, b in ranges if min(duration, b) > max(0.0, a)]
    total = 0.0
    for a, b in merge_spans(clipped) if clipped else []:
        total += max(0.0, min(b, lo) - a) + max(0.0, b - max(a, hi))
    return total


def is_partially_annotated(window: Sequence[float], ranges: Sequence[Sequence[float]], duration: float) -> bool:
    """Whether an answer's ``ranges`` put at least ``max(2 s, 0.1 (e - s))`` seconds of the event outside the
    annotated ``window`` widened by ``max(1 s, 0.05 D)`` on each side.

    >>> is_partially_annotated((10.0, 20.0), [(22.0, 23.4)], 30.0)  # tol 1.5: 21.5..23.4 is 1.9 s < 2 s
    False
    >>> is_partially_annotated((10.0, 20.0), [(0.0, 9.0), (21.0, 24.0)], 30.0)  # 8.5 s + 2.5 s
    True
    """
    return outside_length(window, ranges, duration) >= min_outside(window) - 1e-9


def flags(windows: Sequence[Sequence[float]], ranges: Sequence[Sequence[float]], duration: float) -> bool:
    """:func:`is_partially_annotated` against every annotated window (all must hold: a range inside any
    window's tolerance is explained by that window).

    >>> flags([(2.0, 4.0), (10.0, 12.0)], [(10.0, 12.0)], 20.0), flags([(2.0, 4.0)], [(10.0, 12.0)], 20.0)
    (False, True)
    """
    return bool(windows) and all(is_partially_annotated(w, ranges, duration) for w in windows)


def hidden_mask(frame_times: Sequence[float], windows: Sequence[Sequence[float]]) -> list[bool]:
    """Which frames the agent hides: those at ``s <= t <= e`` for an annotated window (the ground-truth frames of
    :func:`timegrpo.curriculum.masking.inside_windows`).

    >>> hidden_mask([0.0, 0.5, 1.0, 1.5, 2.0], [(0.5, 1.5)])
    [False, True, True, True, False]
    """
    return [inside_windows(float(t), windows) for t in frame_times]


def hidden_frames(frames: torch.Tensor, frame_times: Sequence[float], windows: Sequence[Sequence[float]]
                  ) -> torch.Tensor:
    """``frames`` ``(T, C, H, W)`` with the annotated windows' frames (:func:`hidden_mask`) black; a new tensor of
    the same shape, every other frame unchanged."""
    return black_out(frames, hidden_mask(frame_times, windows))


Span = tuple[float, float]
Verdict = tuple[bool, str]


def _fmt(span: Sequence[float]) -> str:
    return f"{span[0]:.2f}-{span[1]:.2f}"


def instruction_verdict(windows: Sequence[Sequence[float]], answers: Sequence[list[Span] | None], duration: float,
                        agree: int = 2, min_iou: float = 0.5) -> Verdict:
    """The instruction variant: flagged when at least ``agree`` answers' ranges flag the sample (:func:`flags`);
    an unparsable answer (None) or ``none`` (``[]``) does not. ``min_iou`` is unused (the grounding variant's).

    >>> instruction_verdict([(10.0, 20.0)], [[(25.0, 29.0)], [], [(24.0, 28.0)]], 30.0)
    (True, '2 of 3 answers put the event elsewhere: 25.00-29.00; 24.00-28.00')
    >>> instruction_verdict([(10.0, 20.0)], [[(25.0, 29.0)], [], None], 30.0)
    (False, '1 of 3 answers put the event elsewhere (2 needed): 25.00-29.00; 1 none, 1 unparsed')
    """
    hits = [a for a in answers if a is not None and flags(windows, a, duration)]
    where = "; ".join(",".join(_fmt(r) for r in a) for a in hits)
    if len(hits) >= agree:
        return True, f"{len(hits)} of {len(answers)} answers put the event elsewhere: {where}"
    none, bad = sum(a == [] for a in answers), sum(a is None for a in answers)
    return False, (f"{len(hits)} of {len(answers)} answers put the event elsewhere ({agree} needed)"
                   + (f": {where}" if where else "") + f"; {none} none, {bad} unparsed")


def grounding_verdict(windows: Sequence[Sequence[float]], answers: Sequence[Span | None], duration: float,
                      agree: int = 2, min_iou: float = 0.5) -> Verdict:
    """The grounding variant: flagged when ``agree`` of the sampled windows each flag the sample on their own
    (:func:`flags` with that one window) and agree with each other (every pair has IoU >= ``min_iou``).

    >>> grounding_verdict([(2.0, 5.0)], [(12.0, 16.0), (12.5, 16.5), (2.0, 5.0)], 20.0)
    (True, '2 of 3 answers agree outside the annotation: 12.00-16.00, 12.50-16.50')
    >>> grounding_verdict([(2.0, 5.0)], [(12.0, 16.0), (6.0, 9.0), None], 20.0)
    (False, '2 of 3 answers outside the annotation, no 2 of them with pairwise IoU >= 0.5: 12.00-16.00, 6.00-9.00')
    """
    outside = [a for a in answers if a is not None and flags(windows, [a], duration)]
    for group in itertools.combinations(outside, agree):
        if all(span_iou(x, y) >= min_iou for x, y in itertools.combinations(group, 2)):
            return True, f"{agree} of {len(answers)} answers agree outside the annotation: " + ", ".join(
                map(_fmt, group))
    if len(outside) < agree:
        return False, f"{len(outside)} of {len(answers)} answers outside the annotation ({agree} needed)"
    return False, (f"{len(outside)} of {len(answers)} answers outside the annotation, no {agree} of them with "
                   f"pairwise IoU >= {min_iou:g}: " + ", ".join(map(_fmt, outside)))


@dataclass(frozen=True)
class Variant:
    """A way of asking the agent: its prompt template (None: the run's grounding template), how a completion is
    read, and the verdict over one query's parsed answers."""

    template: str | None
    parse: Callable[[str, float | None], Any]
    verdict: Callable[..., Verdict]


#: The agent's variants by name (see the module docstring).
VARIANTS: Registry[Variant] = Registry("boundary reflection variant")
VARIANTS.register("instruction", Variant("boundary_reflection", parse_ranges, instruction_verdict))
VARIANTS.register("grounding", Variant(None, parse_answer, grounding_verdict))
