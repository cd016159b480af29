"""R1@m / mIoU, NExT-GQA and ReXTime metrics with hand-worked numbers; the reward and the metric agree."""

from __future__ import annotations

import pytest

from timegrpo.metrics import count_unparsed, grounding_metrics, nextgqa_metrics, rextime_metrics
from timegrpo.parsing import parse_answer
from timegrpo.rewards import get_reward
from timegrpo.spans import temporal_iou


def test_grounding_metrics_hand_worked():
    # IoUs 1.0, 0.7, 0.5, 0.3, 0.29, None (unparsable -> 0): thresholds are inclusive (>=)
    m = grounding_metrics([1.0, 0.7, 0.5, 0.3, 0.29, None])
    assert m == {"R1@0.3": pytest.approx(400 / 6), "R1@0.5": 50.0, "R1@0.7": pytest.approx(200 / 6),
                 "mIoU": pytest.approx(100 * 2.79 / 6)}
    assert count_unparsed([1.0, None, None]) == 2
    assert grounding_metrics([]) == {"R1@0.3": 0.0, "R1@0.5": 0.0, "R1@0.7": 0.0, "mIoU": 0.0}


def test_training_reward_equals_eval_iou():
    texts = ["<answer>2 to 6</answer>", "<answer>0-100</answer>", "junk", "<answer>4 and 8</answer>"]
    windows = [[[4, 8]], [[4, 8], [0, 50]], [[1, 2]], [[4, 8]]]
    rewards = get_reward("iou")(texts, windows=windows, duration=[60.0] * 4)
    ious = [temporal_iou(parse_answer(t, 60.0), w) for t, w in zip(texts, windows)]
    assert rewards == ious == [pytest.approx(1 / 3), pytest.approx(50 / 60), 0.0, 1.0]
    assert grounding_metrics(rewards)["mIoU"] == pytest.approx(100 * (1 / 3 + 50 / 60 + 1) / 4)


def test_nextgqa_hand_worked():
    preds = [(2, 6), (5, 5), (0, 20), None, (30, 40)]
    windows = [[(4, 10)], [(0, 10)], [(0, 5), (15, 20)], [(0, 1)], [(0, 10)]]
    correct = [True, True, False, True, True]
    # IoP: 2/4 = .5 | point inside -> 1 | max(5/20, 5/20) = .25 | 0 | 0
    # IoU: 2/8 = .25 | 0 | max(5/20, 5/20) = .25 | 0 | 0
    m = nextgqa_metrics(preds, windows, correct)
    assert m["mIoP"] == pytest.approx(100 * 1.75 / 5)
    assert m["IoP@0.3"] == pytest.approx(40.0) and m["IoP@0.5"] == pytest.approx(40.0)
    assert m["mIoU"] == pytest.approx(100 * 0.5 / 5)
    assert m["IoU@0.3"] == 0.0 and m["IoU@0.5"] == 0.0
    assert m["Acc@GQA"] == pytest.approx(40.0)  # samples 0 and 1: right and IoP >= 0.5
    assert m["Acc@QA"] == pytest.approx(80.0)
    assert "Acc@GQA" not in nextgqa_metrics(preds, windows)


def test_rextime_hand_worked():
    preds = [(0, 10), (0, 6), (20, 30), None]
    windows = [[(0, 10)], [(0, 10)], [(0, 10)], [(0, 10)]]
    m = rextime_metrics(preds, windows, [True, True, True, False])
    # IoU 1, .6, 0, 0
    assert m == {"mIoU": pytest.approx(40.0), "R1@0.3": 50.0, "R1@0.5": 50.0, "Acc": 75.0, "Acc@IoU>=0.5": 50.0}
