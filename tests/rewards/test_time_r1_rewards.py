"""``tiou``, ``iou`` and ``format`` equal Time-R1's reward functions on a table of hand-worked cases.

Time-R1 (xiaomi-research/time-r1 ``main.py``): ``iou_timestamp_reward_v2`` (our ``tiou``),
``iou_timestamp_reward`` (our ``iou``), ``format_reward`` (our ``format``), all over
``parse_timestamp_output`` (our ``parse_answer(strict=True)``). Every expected value below was worked out by
hand from those definitions: IoU = inter / hull, tIoU = IoU * (1 - |gs/D - ps/D|) * (1 - |ge/D - pe/D|).
"""

from __future__ import annotations

import pytest

from timegrpo.rewards import get_reward

GT, D = (10.0, 30.0), 100.0  # default ground truth and duration of the cases

# (id, completion, gt, duration, time_r1_iou, time_r1_tiou, time_r1_format, tolerant_tiou)
CASES = [
    # pred (10, 20): IoU 10/20 = 0.5; factors 1 * (1 - |0.3 - 0.2|) = 0.9 -> 0.45
    ("plain", "<think>look</think><answer>10.00 to 20.00</answer>", GT, D, 0.5, 0.45, 1.0, 0.45),
    # several answer blocks: the last one, (10, 20); format still 1 (fullmatch stretches the lazy .*?)
    ("several_answers", "<think>a</think><answer>0 to 5</answer><answer>10 to 20</answer>", GT, D,
     0.5, 0.45, 1.0, 0.45),
    # several answer blocks, the last without a span: unparsable -> 0
    ("last_answer_empty", "<think>a</think><answer>10 to 20</answer><answer>soon</answer>", GT, D,
     0.0, 0.0, 1.0, 0.0),
    # "and" instead of "to": pred (12.5, 17.5) vs gt (10, 20), D 50: IoU 5/10 = 0.5;
    # factors (1 - |0.2 - 0.25|) (1 - |0.4 - 0.35|) = 0.95 * 0.95 -> 0.45125
    ("and", "<think>t</think><answer>between 12.5 and 17.5</answer>", (10.0, 20.0), 50.0,
     0.5, 0.45125, 1.0, 0.45125),
    # missing think: the IoU rewards do not care, format is 0
    ("missing_think", "<answer>10 to 20</answer>", GT, D, 0.5, 0.45, 0.0, 0.45),
    # think but no answer block: 0 everywhere
    ("missing_answer", "<think>it is 10 to 20</think>", GT, D, 0.0, 0.0, 0.0, 0.0),
    # two spans in the answer: the last, (20, 30): IoU 10/20; factors (1 - 0.1) * 1 -> 0.45
    ("two_spans", "<think>x</think><answer>10 to 20, no: 20 to 30</answer>", GT, D, 0.5, 0.45, 1.0, 0.45),
    # upper-case TO is read by Time-R1 (re.IGNORECASE); pred (15, 30): IoU 15/20 = 0.75, factors 0.95 * 1
    ("upper_TO", "<think>x</think><answer>15 TO 30</answer>", GT, D, 0.75, 0.7125, 1.0, 0.7125),
    # start > end: Time-R1 parses (20, 10); intersection 0 -> 0 (ours: invalid -> 0)
    ("reversed", "<think>x</think><answer>20 to 10</answer>", GT, D, 0.0, 0.0, 1.0, 0.0),
    # whitespace and newlines around and inside: strip() + DOTALL; pred (10, 30) exact -> 1
    ("whitespace", "  \n<think>a\nb</think>\n\n<answer>10 to 30</answer>\n ", GT, D, 1.0, 1.0, 1.0, 1.0),
    # trailing text after the answer breaks the format only
    ("trailing_text", "<think>a</think><answer>10 to 30</answer> done", GT, D, 1.0, 1.0, 0.0, 1.0),
    # text before the think block breaks the format
    ("leading_text", "Sure. <think>a</think><answer>10 to 30</answer>", GT, D, 1.0, 1.0, 0.0, 1.0),
    # Time-R1 does not read "10-20" (needs " to "/" and "); the tolerant parser does
    ("dash", "<think>a</think><answer>10-20</answer>", GT, D, 0.0, 0.0, 1.0, 0.45),
    # prediction past the video (not clamped by Time-R1): pred (0, 250), gt (0, 100), D 100:
    # IoU 100/250 = 0.4; factors 1 * (1 - |1 - 2.5|) = -0.5 -> -0.2. Tolerant clamps to (0, 100) -> 1.0
    ("past_end", "<think>a</think><answer>0 to 250</answer>", (0.0, 100.0), D, 0.4, -0.2, 1.0, 1.0),
    # ".5 to 3": Time-R1's regex reads "5 to 3" (reversed, 0); tolerant reads (0.5, 3) vs gt (0, 4), D 10:
    # IoU 2.5/4 = 0.625; factors (1 - 0.05) * (1 - 0.1) = 0.855 -> 0.534375
    ("leading_dot", "<think>a</think><answer>.5 to 3</answer>", (0.0, 4.0), 10.0, 0.0, 0.0, 1.0, 0.534375),
]


def _columns(gt, duration):
    return {"windows": [[list(gt)]], "duration": [duration]}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_strict_rewards_equal_time_r1(case):
    _, text, gt, dur, iou, tiou, fmt, _ = case
    cols = _columns(gt, dur)
    assert get_reward("tiou", strict=True)([text], **cols) == [pytest.approx(tiou)]
    assert get_reward("iou", strict=True)([text], **cols) == [pytest.approx(iou)]
    assert get_reward("format")([text], **cols) == [fmt]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_tolerant_tiou(case):
    _, text, gt, dur, _, _, _, tolerant = case
    assert get_reward("tiou")([text], **_columns(gt, dur)) == [pytest.approx(tolerant)]


def test_conversational_completions_score_like_strings():
    texts = [c[1] for c in CASES]
    cols = {"windows": [[list(c[2])] for c in CASES], "duration": [c[3] for c in CASES]}
    msgs = [[{"role": "assistant", "content": t}] for t in texts]
    for name in ("tiou", "iou", "format"):
        assert get_reward(name)(msgs, **cols) == get_reward(name)(texts, **cols)


def test_tiou_takes_the_best_of_several_windows():
    # pred (10, 20) vs windows (10, 30) -> 0.45 and (10, 20) -> 1.0
    out = get_reward("tiou")(["<answer>10 to 20</answer>"], windows=[[[10, 30], [10, 20]]], duration=[100.0])
    assert out == [pytest.approx(1.0)]


def test_tiou_needs_a_duration():
    with pytest.raises(Exception, match=r"tiou.*sample 1.*duration"):
        get_reward("tiou")(["<answer>1 to 2</answer>"] * 2, windows=[[[0, 1]], [[0, 1]]], duration=[10.0, None])


def test_sample_without_windows_is_not_applicable():
    assert get_reward("iou")(["<answer>1 to 2</answer>"], windows=[[]]) == [None]
