"""``timegrpo score --protocol timelens`` on a TimeLens-Bench file written by hand, against numbers worked out by
hand: the first time pair of the answer, whole seconds, start >= end scores 0, R1 counts IoU >= m."""

from __future__ import annotations

import json

import pytest

from timegrpo.cli import main
from timegrpo.evaluate.protocols import parse_timelens

BENCH = {
    "vidA": {"duration": 30.0, "spans": [[2.0, 8.0], [10.0, 20.0]], "queries": ["A man opens the door.", "he sits"]},
    "vidB": {"duration": 12.5, "spans": [[0.0, 4.4]], "queries": ["dog barks"]},
    "vidC": {"duration": 60.0, "spans": [[30.0, 40.0]], "queries": ["cat jumps"]},
    "vidD": {"duration": 20.0, "spans": [[5.0, 15.0], [0.0, 10.0]], "queries": ["nothing", "half"]},
}
# qid -> (completion, IoU by hand)
CASES = {
    # first pair 3.4 - 8.6 (the later "2 - 8" is ignored) -> whole seconds 3 - 9 vs [2, 8]: 5 / 7
    "vidA_0": ("The event happens in 3.4 - 8.6 seconds, or maybe 2 - 8.", 5 / 7),
    # start >= end scores 0
    "vidA_1": ("<answer>20 to 10</answer>", 0.0),
    # clock times 0:01, 0:04 -> 1 - 4 vs [0, 4.4]: 3 / 4.4
    "vidB_0": ("It is from 0:01 to 0:04.", 3 / 4.4),
    # an 'a - b' pair comes before any 'a to b': the reasoning's 31 - 39 vs [30, 40]: 8 / 10
    "vidC_0": ("<think>Maybe 31 - 39.</think><answer>30.4 to 39.6</answer>", 0.8),
    # no pair at all
    "vidD_0": ("I cannot tell.", 0.0),
    # 0 - 5 vs [0, 10]: exactly 0.5, which R1@0.5 counts (>=)
    "vidD_1": ("The event happens in 0 - 5 seconds.", 0.5),
}


def test_first_pair_is_read_from_the_whole_output():
    assert parse_timelens(CASES["vidC_0"][0]) == (31.0, 39.0)
    assert parse_timelens("<think>31 and 39</think><answer>30.4 to 39.6</answer>") == (30.4, 39.6)
    assert parse_timelens("<think>first 31, then 39</think><answer>30.4 and 39.6</answer>") == (31.0, 39.0)


def test_timelens_protocol_equals_a_hand_computation(tmp_path, capsys):
    ann = tmp_path / "charades-timelens.json"
    ann.write_text(json.dumps(BENCH))
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"qid": q, "completion": c}) + "\n" for q, (c, _) in CASES.items()))
    assert main(["score", "--predictions", str(pred), "--annotations", str(ann), "--protocol", "timelens",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    ious = [iou for _, iou in CASES.values()]
    assert got["mIoU"] == pytest.approx(100 * sum(ious) / 6)
    assert got["R1@0.3"] == pytest.approx(100 * 4 / 6)
    assert got["R1@0.5"] == pytest.approx(100 * 4 / 6)
    assert got["R1@0.7"] == pytest.approx(100 * 2 / 6)
    assert (got["n_scored"], got["n_unparsed"], got["n_invalid_windows"]) == (6, 1, 0)


def test_windows_without_completion_are_rounded_and_the_first_gt_is_used(tmp_path, capsys):
    ann = tmp_path / "b.json"
    ann.write_text(json.dumps(BENCH))
    windows = {"vidA_0": [[2.4, 7.6, 0.9], [0, 30, 0.1]], "vidA_1": [[12.5, 12.5, 1]], "vidB_0": [[4.4, 0.5, 1]],
               "vidC_0": [[30.0, 35.0, 1]], "vidD_0": [[0.0, 10.0, 1]], "vidD_1": [[0.0, 10.0, 1]]}
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"qid": q, "pred_relevant_windows": w}) + "\n" for q, w in windows.items()))
    assert main(["score", "--predictions", str(pred), "--annotations", str(ann), "--protocol", "timelens",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    # vidA_0 2.4 - 7.6 -> 2 - 8: 1; vidA_1 12.5 - 12.5 -> 12 - 12 (half to even): 0; vidB_0 reversed: 0;
    # vidC_0: 0.5; vidD_0 [0, 10] vs the FIRST window [5, 15]: 5 / 15 (the second one would give 1); vidD_1: 1
    ious = [1.0, 0.0, 0.0, 0.5, 1 / 3, 1.0]
    assert got["mIoU"] == pytest.approx(100 * sum(ious) / 6)
    assert (got["R1@0.3"], got["R1@0.5"], got["R1@0.7"]) == pytest.approx((100 * 4 / 6, 100 * 3 / 6, 100 * 2 / 6))
    # the default protocol reads the same windows unrounded, with the max over GT windows
    assert main(["score", "--predictions", str(pred), "--annotations", str(ann), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mIoU"] != pytest.approx(got["mIoU"])
