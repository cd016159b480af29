"""Duration and window statistics of a list of samples (what ``timegrpo data inspect`` prints).

>>> from timegrpo.data.schema import Sample
>>> s = [Sample("0", "a", None, 10.0, "q", [(1.0, 3.0)]), Sample("1", "a", None, 10.0, "r", [(0.0, 2.0), (4.0, 8.0)])]
>>> st = summarize(s)
>>> st["samples"], st["videos"], st["windows"], st["multi_window_samples"]
(2, 1, 3, 1)
>>> st["duration"]["mean"], st["window_length"]["mean"], round(st["window_fraction"]["mean"], 3)
(10.0, 2.6666666666666665, 0.267)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from timegrpo.data.schema import Sample


def _describe(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "mean": statistics.fmean(values), "median": statistics.median(values),
            "max": max(values)}


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Counts, per-video durations (s), window lengths (s) and window length / duration, as min/mean/median/max."""
    durations = {s.vid: s.duration for s in samples if s.duration is not None}
    lengths = [e - s for x in samples for s, e in x.windows]
    fractions = [(e - s) / x.duration for x in samples if x.duration for s, e in x.windows]
    return {
        "samples": len(samples),
        "videos": len({s.vid for s in samples}),
        "windows": len(lengths),
        "multi_window_samples": sum(len(s.windows) > 1 for s in samples),
        "samples_without_windows": sum(not s.windows for s in samples),
        "cropped_samples": sum(s.video_start is not None or s.video_end is not None for s in samples),
        "duration": _describe(list(durations.values())),
        "window_length": _describe(lengths),
        "window_fraction": _describe(fractions),
    }
