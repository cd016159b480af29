"""VideoTG-R1's Difficulty Estimation Agent: a sample's difficulty from the IoUs of n zero-shot answers.

``difficulty = 1 - mean IoU``; buckets ``easy`` (mean >= 0.5), ``hard`` (mean < 0.3) and ``medium`` between
(SPEC section 2; the thresholds are ours, as config values). SPEC also names "all 8 < 0.3" as hard: every such
sample has mean < 0.3, so the mean rule covers it.
"""

from __future__ import annotations

from collections.abc import Sequence

BUCKETS = ("easy", "medium", "hard")


def mean_iou(ious: Sequence[float]) -> float:
    """The IoU of a scored sample: the mean of its answers' IoUs.

    >>> mean_iou([0.25, 0.5, 0.0, 0.25])
    0.25
    """
    if not ious:
        raise ValueError("a scored sample needs at least one IoU")
    return sum(ious) / len(ious)


def difficulty(ious: Sequence[float]) -> float:
    """``1 - mean IoU``.

    >>> difficulty([0.25, 0.75])
    0.5
    """
    return 1.0 - mean_iou(ious)


def difficulty_bucket(ious: Sequence[float], easy: float = 0.5, hard: float = 0.3) -> str:
    """``"easy"`` when mean IoU >= ``easy``, ``"hard"`` when it is < ``hard``, else ``"medium"``.

    >>> difficulty_bucket([0.5, 0.5]), difficulty_bucket([0.3, 0.3]), difficulty_bucket([0.5, 0.0])
    ('easy', 'medium', 'hard')
    """
    if not 0 <= hard <= easy <= 1:
        raise ValueError(f"need 0 <= hard <= easy <= 1, got hard {hard}, easy {easy}")
    m = mean_iou(ious)
    return "easy" if m >= easy else "hard" if m < hard else "medium"
