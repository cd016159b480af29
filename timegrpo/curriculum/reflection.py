"""VideoTG-R1's Boundary Reflection Agent: the rule that calls a sample partially annotated.

The agent shows a frozen video LLM the video with the annotated window blacked out and asks where else the event
happens; it answers time ranges (or none). The answer flags the sample when the ranges, outside the annotated
window widened by ``tol = max(1 s, 0.05 D)`` on each side (``D`` the duration), cover at least
``max(2 s, 0.1 (e - s))`` seconds in total (SPEC section 2; the thresholds are ours). Ranges are clipped to
``[0, D]`` and merged before they are measured, so overlapping answers are not counted twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from timegrpo.spans import merge_spans


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
