"""Evaluation metrics, all built on :mod:`timegrpo.spans` (the IoU the rewards use).

* :func:`grounding_metrics`: R1@{0.3,0.5,0.7} and mIoU from per-query top-1 IoUs.
* :func:`qvhighlights_metrics`: the official QVHighlights ``brief`` keys (``MR-full-mAP``, ``HL-min-VeryGood-Hit1``...).
* :func:`nextgqa_metrics`, :func:`rextime_metrics`: grounded QA.
"""

from __future__ import annotations

from timegrpo.metrics.gqa import nextgqa_metrics, rextime_metrics
from timegrpo.metrics.grounding import count_unparsed, grounding_metrics
from timegrpo.metrics.qvhighlights import qvhighlights_metrics, saliency_labels

__all__ = [
    "count_unparsed",
    "grounding_metrics",
    "nextgqa_metrics",
    "qvhighlights_metrics",
    "rextime_metrics",
    "saliency_labels",
]
