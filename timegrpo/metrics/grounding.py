"""Top-1 temporal grounding metrics: R1@{0.3,0.5,0.7} and mIoU (SPEC section 0)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)


def grounding_metrics(
    ious: Sequence[float | None], thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, above: bool = False
) -> dict[str, float]:
    """R1@m (% of queries whose top-1 IoU is >= m; ``above=True``: > m, as Time-R1's evaluation scripts count)
    and mIoU (mean IoU x 100) from per-query IoUs.

    ``ious[i]`` is :func:`timegrpo.spans.temporal_iou` of query ``i``'s top-1 prediction (the max over its
    ground-truth windows). None (an answer that could not be parsed) counts as IoU 0; count those with
    :func:`count_unparsed` to report them. Returns ``{"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}`` in percent
    (keys follow ``thresholds``); every value is 0.0 for an empty input.

    >>> m = grounding_metrics([1.0, 0.4, None])
    >>> m["R1@0.3"], m["R1@0.5"], m["R1@0.7"], m["mIoU"]
    (66.66..., 33.33..., 33.33..., 46.66...)
    >>> grounding_metrics([0.5], thresholds=(0.5,)), grounding_metrics([0.5], thresholds=(0.5,), above=True)
    ({'R1@0.5': 100.0, 'mIoU': 50.0}, {'R1@0.5': 0.0, 'mIoU': 50.0})
    """
    arr = np.array([0.0 if v is None else float(v) for v in ious], dtype=float)
    out: dict[str, float] = {}
    for m in thresholds:
        hit = arr > m if above else arr >= m
        out[f"R1@{m:g}"] = float(100.0 * np.mean(hit)) if arr.size else 0.0
    out["mIoU"] = float(100.0 * arr.mean()) if arr.size else 0.0
    return out


def count_unparsed(ious: Sequence[float | None]) -> int:
    """How many entries are None (predictions that could not be parsed).

    >>> count_unparsed([0.2, None, None])
    2
    """
    return sum(v is None for v in ious)
