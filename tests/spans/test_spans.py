"""IoU, IoP, clipping and merged IoU with hand-worked numbers."""

from __future__ import annotations

import pytest

from timegrpo.spans import (
    clip_span,
    merge_spans,
    merged_iou,
    span_iop,
    span_iou,
    temporal_iop,
    temporal_iou,
)


@pytest.mark.parametrize(
    "pred,gts,expected",
    [
        ((0, 10), [(5, 15)], 5 / 15),
        ((0, 10), [(20, 30), (0, 5), (2, 12)], 8 / 12),  # max over windows
        ((0, 10), [(10, 20)], 0.0),  # touching
        ((5, 5), [(5, 5)], 0.0),  # union 0
        ((5, 5), [(0, 10)], 0.0),  # point prediction
        (None, [(0, 10)], 0.0),
        ((0, 10), [], 0.0),
        ((3, 7, 0.9), [(0, 10)], 0.4),  # a score after (s, e) is ignored
    ],
)
def test_temporal_iou(pred, gts, expected):
    assert temporal_iou(pred, gts) == pytest.approx(expected)


def test_span_iou_is_symmetric_and_bounded():
    pairs = [((0, 3), (1, 9)), ((2.5, 4.0), (0.0, 100.0)), ((7, 8), (1, 2))]
    for a, b in pairs:
        assert span_iou(a, b) == span_iou(b, a)
        assert 0.0 <= span_iou(a, b) <= 1.0


@pytest.mark.parametrize(
    "pred,gt,expected",
    [((2, 6), (4, 10), 0.5), ((4, 6), (0, 10), 1.0), ((0, 10), (4, 6), 0.2), ((5, 5), (0, 10), 1.0),
     ((5, 5), (6, 10), 0.0), ((0, 2), (4, 10), 0.0), ((6, 2), (0, 10), 0.0)],
)
def test_span_iop(pred, gt, expected):
    assert span_iop(pred, gt) == pytest.approx(expected)


def test_temporal_iop_max_over_windows():
    assert temporal_iop((0, 10), [(0, 2), (5, 15)]) == pytest.approx(0.5)
    assert temporal_iop(None, [(0, 2)]) == 0.0


def test_merge_and_merged_iou():
    assert merge_spans([(3, 5), (0, 1), (4, 8), (1, 2)]) == [(0.0, 2.0), (3.0, 8.0)]
    # pred covers [0,4] + [6,10] (8 s); gt [2,8] (6 s); intersection [2,4]+[6,8] = 4; union 10
    assert merged_iou([(0, 4), (6, 10)], [(2, 8)]) == pytest.approx(0.4)
    # overlapping predictions are counted once: [0,6] vs [0,6]
    assert merged_iou([(0, 4), (2, 6)], [(0, 6)]) == pytest.approx(1.0)
    # one span each: the plain IoU
    assert merged_iou([(0, 10)], [(5, 15)]) == pytest.approx(span_iou((0, 10), (5, 15)))
    assert merged_iou([], [(0, 1)]) == 0.0


def test_clip_span():
    assert clip_span((-5, 50), 30) == (0.0, 30.0)
    assert clip_span((2, 3), 30) == (2.0, 3.0)
