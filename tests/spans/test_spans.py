"""Answer parsing (strict = Time-R1, tolerant = ours), IoU, IoP and merged IoU with hand-worked numbers."""

from __future__ import annotations

import pytest

from timegrpo.spans import (
    clip_span,
    merge_spans,
    merged_iou,
    parse_answer,
    span_iop,
    span_iou,
    temporal_iop,
    temporal_iou,
)

# (completion, duration, tolerant result, strict (Time-R1) result)
PARSE_TABLE = [
    ("<answer>12.54 to 17.83</answer>", None, (12.54, 17.83), (12.54, 17.83)),
    ("<think>1 to 2</think><answer>3 to 4</answer>", None, (3.0, 4.0), (3.0, 4.0)),
    ("<answer>1 to 2</answer><answer>5 to 6</answer>", None, (5.0, 6.0), (5.0, 6.0)),  # last block
    ("<answer>1 to 2</answer><answer>none</answer>", None, None, None),  # last block has no span
    ("<answer>1 to 2, maybe 7 to 9</answer>", None, (7.0, 9.0), (7.0, 9.0)),  # last span in the block
    ("<answer>between 3.5 and 8</answer>", None, (3.5, 8.0), (3.5, 8.0)),
    ("<answer>3 TO 8</answer>", None, (3.0, 8.0), (3.0, 8.0)),  # case-insensitive in both
    ("<answer>\n3 to 8\n</answer>", None, (3.0, 8.0), (3.0, 8.0)),  # dot matches newline
    ("<answer>12.5-30</answer>", None, (12.5, 30.0), None),
    ("<answer>12.5 - 30.0</answer>", None, (12.5, 30.0), None),
    ("<answer>12.5 – 30</answer>", None, (12.5, 30.0), None),
    ("<answer>12.5  to  30</answer>", None, (12.5, 30.0), None),  # Time-R1 wants exactly one space
    ("<answer>12.5s to 30s</answer>", None, (12.5, 30.0), None),
    ("<answer>12.5 seconds to 30 seconds</answer>", None, (12.5, 30.0), None),
    ("<answer>1:05 to 1:20</answer>", None, (65.0, 80.0), (5.0, 1.0)),  # Time-R1 reads "05 to 1"
    ("<answer>01:02:03 to 01:02:04.5</answer>", None, (3723.0, 3724.5), (3.0, 1.0)),  # ... and "03 to 01"
    ("<answer>.5 to 3</answer>", None, (0.5, 3.0), (5.0, 3.0)),  # Time-R1 cannot read ".5"
    ("<answer>12. to 17.</answer>", None, (12.0, 17.0), (12.0, 17.0)),
    ("<answer>-3 to 8</answer>", 30.0, (0.0, 8.0), (3.0, 8.0)),  # minus sign, clamped to 0
    ("<answer>5 to 45</answer>", 30.0, (5.0, 30.0), (5.0, 45.0)),  # clamped to the duration
    ("<answer>40 to 45</answer>", 30.0, (30.0, 30.0), (40.0, 45.0)),
    ("<answer>20 to 10</answer>", None, None, (20.0, 10.0)),  # start > end: invalid when tolerant
    ("<answer>50 to 40</answer>", 30.0, None, (50.0, 40.0)),  # reversed as written, though both clamp to 30
    ("<answer>Qwen2.5 to 7</answer>", None, None, (2.5, 7.0)),  # a number glued to a word is not read
    ("12 to 15", None, None, None),  # no answer block
    ("<answer>12 to 15", None, None, None),  # unclosed block
    ("", None, None, None),
]


@pytest.mark.parametrize("text,duration,tolerant,strict", PARSE_TABLE)
def test_parse_table(text, duration, tolerant, strict):
    assert parse_answer(text, duration) == tolerant
    assert parse_answer(text, duration, strict=True) == strict


def test_allow_bare_reads_text_without_answer_block():
    assert parse_answer("the event is 3 to 4, no, 5 to 6", allow_bare=True) == (5.0, 6.0)
    assert parse_answer("<answer>1 to 2</answer> 5 to 6", allow_bare=True) == (1.0, 2.0)


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
