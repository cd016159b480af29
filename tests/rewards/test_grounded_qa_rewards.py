"""``glue_iou`` (VideoChat-R1's merged IoU), ``answer_letter`` and ``answer_format`` with hand-worked values."""

from __future__ import annotations

import pytest

from timegrpo.rewards import get_reward

GT = [[2.0, 8.0], [12.0, 14.0]]  # 6 s + 2 s of ground truth

# (id, completion, strict (VideoChat-R1) value, tolerant value)
GLUE_CASES = [
    # pred [0,4]+[6,10] = 8 s; gt [2,8]+[12,14] = 8 s; inter [2,4]+[6,8] = 4; union 12
    ("two_spans", "<answer>B</answer><glue>[(0, 4), (6, 10)]</glue>", 4 / 12, 4 / 12),
    # overlapping predictions merge to [0,10] (10 s): inter 6, union 10 + 8 - 6 = 12
    ("overlap", "<glue>[(0, 6), (4, 10)]</glue>", 6 / 12, 6 / 12),
    # exact
    ("exact", "<glue>[(2, 8), (12, 14)]</glue>", 1.0, 1.0),
    # trailing comma is in VideoChat-R1's grammar
    ("trailing_comma", "<glue>[(2, 8), (12, 14),]</glue>", 1.0, 1.0),
    # lists instead of tuples: outside VideoChat-R1's grammar; tolerant reads them
    ("lists", "<glue>[[2, 8], [12, 14]]</glue>", 0.0, 1.0),
    # a space inside the parentheses is outside the grammar too
    ("inner_space", "<glue>[( 2, 8)]</glue>", 0.0, 6 / 8),
    # start > end: invalid in both
    ("reversed", "<glue>[(8, 2)]</glue>", 0.0, 0.0),
    # empty prediction: no overlap
    ("empty", "<glue>[]</glue>", 0.0, 0.0),
    # two glue blocks: VideoChat-R1 takes the first, we take the last
    ("two_blocks", "<glue>[(2, 8)]</glue><glue>[(12, 14)]</glue>", 6 / 8, 2 / 8),
    ("no_glue", "<answer>2 to 8</answer>", 0.0, 0.0),
    # "02" is not a Python int literal (VideoChat-R1 uses ast.literal_eval); "2.0" and "0" are fine
    ("leading_zero", "<glue>[(02, 8)]</glue>", 0.0, 6 / 8),
    ("leading_zero_float", "<glue>[(02.0, 8)]</glue>", 6 / 8, 6 / 8),
]


@pytest.mark.parametrize("case", GLUE_CASES, ids=[c[0] for c in GLUE_CASES])
def test_glue_iou(case):
    _, text, strict, tolerant = case
    assert get_reward("glue_iou", strict=True)([text], windows=[GT]) == [pytest.approx(strict)]
    assert get_reward("glue_iou")([text], windows=[GT]) == [pytest.approx(tolerant)]


def test_glue_iou_clamps_to_duration_when_tolerant():
    # pred [2, 30] clamped to [2, 10] vs gt [2, 8]: 6 / 8
    assert get_reward("glue_iou")(["<glue>[(2, 30)]</glue>"], windows=[[[2, 8]]], duration=[10.0]) == [0.75]


@pytest.mark.parametrize(
    "text,answer,options,expected",
    [
        ("<think>x</think><answer>(B) the dog</answer>", "B", None, 1.0),
        ("<answer>(B) the dog</answer>", 1, None, 1.0),  # index answer
        ("<answer>B.</answer>", "(B)", None, 1.0),
        ("<answer>The answer is C</answer>", "C", None, 1.0),
        ("<answer>(A) no, (C)</answer>", "C", None, 1.0),  # the last (X)
        ("<answer>lay on floor</answer>", "lay on floor", ["clap", "crawl", "lay on floor"], 1.0),  # NExT-GQA text
        ("<answer>crawl</answer>", "lay on floor", ["clap", "crawl", "lay on floor"], 0.0),
        ("<answer>A dog runs</answer>", "A", None, 0.0),  # an article is not a letter
        ("(B)", "B", None, 0.0),  # no answer block
        ("<answer>(D)</answer>", None, None, None),  # no ground truth: not applicable
    ],
)
def test_answer_letter(text, answer, options, expected):
    out = get_reward("answer_letter")([text], answer=[answer], options=[options])
    assert out == [expected]


def test_answer_letter_rejects_an_unreadable_ground_truth():
    with pytest.raises(Exception, match=r"answer_letter.*sample 0"):
        get_reward("answer_letter")(["<answer>(A)</answer>"], answer=["maybe"])


@pytest.mark.parametrize(
    "text,expected",
    [("<answer>1 to 2</answer>", 1.0), ("  <answer>\n1 to 2\n</answer>\n", 1.0), ("<answer></answer>", 1.0),
     ("<think>a</think><answer>1 to 2</answer>", 0.0), ("<answer>1</answer><answer>2</answer>", 0.0),
     ("1 to 2", 0.0), ("<answer>1 to 2</answer> ok", 0.0)],
)
def test_answer_format(text, expected):
    assert get_reward("answer_format")([text]) == [expected]
