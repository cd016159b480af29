"""`timegrpo demo --method opd`: the pipeline runs and reports what the issue asks for; TVDF's round selection
against hand-worked numbers; the done-when bar (slow)."""

from __future__ import annotations

import json

import pytest

from timegrpo.cli import main
from timegrpo.config import ConfigError
from timegrpo.demo import DemoConfig, OPDOptions, run_demo
from timegrpo.demo_opd import round_selection
from timegrpo.metrics import grounding_metrics
from timegrpo.parsing import parse_answer
from timegrpo.spans import temporal_iou

PARTS = ("before", "teacher", "grpo", "opd", "opd_random")
TEACHER = [[1.0, 1.0], [0.2, 0.4], [0.8, 0.6], [0.9, 0.9], [0.5, 0.5]]
STUDENT = [[0.5, 0.5], [0.0, 0.0], [0.1, 0.1], [0.9, 0.7], [0.0, 0.2]]


def test_round_selection_tvdf_and_random():
    """Teacher means 1.0, 0.3, 0.7, 0.9, 0.5: sample 1 is unreliable (< 0.5). Deltas of the others: 0.5, 0.6, 0.1,
    0.4; the top 2 are samples 2 and 0. Random: 2 distinct pool indices, no scoring of the student."""
    dc = DemoConfig(method="opd", opd=OPDOptions(k=2, pool=5))
    picks, info = round_selection(dc, "tvdf", 0, lambda: STUDENT, TEACHER)
    assert picks == [0, 2]
    assert info["reliable"] == 4 and info["selected"] == 2
    assert info["pool_student_iou"] == pytest.approx((0.5 + 0.0 + 0.1 + 0.8 + 0.1) / 5)
    assert info["selected_student_iou"] == pytest.approx((0.5 + 0.1) / 2)
    assert info["selected_teacher_iou"] == pytest.approx((1.0 + 0.7) / 2)
    even, _ = round_selection(replace_k(dc, 3), "tvdf_even", 0, lambda: STUDENT, TEACHER)
    assert even == [2, 3, 4]  # ranked 2, 0, 4, 3 (deltas 0.6, 0.5, 0.4, 0.1): positions 0, 2 (1.5 rounds to 2), 3

    def never():
        raise AssertionError("random selection must not score the student")

    rand, info = round_selection(dc, "random", 1, never, TEACHER)
    assert len(set(rand)) == 2 and all(0 <= i < 5 for i in rand) and info == {"round": 2, "selected": 2}


def replace_k(dc, k):
    import dataclasses

    return dataclasses.replace(dc, opd=dataclasses.replace(dc.opd, k=k))


def test_opd_options_are_checked():
    with pytest.raises(ConfigError, match="opd.selector"):
        OPDOptions(selector="timerft")
    with pytest.raises(ConfigError, match=r"opd.k: must be <= opd.pool \(8\), got 9"):
        OPDOptions(pool=8, k=9)
    with pytest.raises(ConfigError, match="method"):
        DemoConfig(method="distill")
    with pytest.raises(ConfigError, match=r"rl_steps: demo 'opd' runs its RL for a wall time \(--opd.seconds\)"):
        run_demo(DemoConfig(method="opd", rl_steps=5))  # refused before anything runs


def _rescore(out, part, truth):
    records = [json.loads(x) for x in (out / "predictions" / f"{part}.jsonl").read_text().splitlines()]
    assert [r["qid"] for r in records] == list(truth), part
    return grounding_metrics([temporal_iou(parse_answer(r["completion"], truth[r["qid"]]["duration"]),
                                           truth[r["qid"]]["relevant_windows"]) for r in records])


def test_opd_demo_small_run_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--method", "opd", "--out", str(out), "--n-videos", "28", "--test-size", "4",
                 "--threads", "1", "--sft-steps", "30", "--opd.teacher_steps", "4", "--opd.seconds", "2",
                 "--opd.pool", "8", "--opd.k", "4", "--opd.rounds", "2", "--opd.prompts", "2", "--opd.teacher_n", "2",
                 "--opd.student_n", "2"]) == 0
    report = json.loads((out / "report.json").read_text())
    truth = {r["qid"]: r for r in map(json.loads, (out / "data" / "test.jsonl").read_text().splitlines())}
    for part in PARTS:
        assert {"mIoU", "R1@0.5", "R1@0.7", "seconds"} <= set(report[part]), part
        expected = _rescore(out, part, truth)
        assert {k: report[part][k] for k in expected} == pytest.approx(expected), part
    for part in ("grpo", "opd", "opd_random", "teacher"):
        assert report["gain_mIoU"][part] == round(report[part]["mIoU"] - report["before"]["mIoU"], 2)
    assert report["steps"]["sft"] == 30 and report["steps"]["teacher"] == 4 and report["steps"]["grpo"] >= 1
    assert report["teacher_pool"]["n"] == 8
    random_rounds = report["rounds"]["opd_random"]
    assert random_rounds and all(r["selected"] == 4 for r in random_rounds)
    assert report["steps"]["opd_random"] == sum(r["steps"] for r in random_rounds) >= 1
    opd_logs = [json.loads(x) for x in (out / "opd_random" / "round_1" / "metrics.jsonl").read_text().splitlines()]
    assert all(x["opd/reward_mean"] != 0 and x["prompts"] == 2 for x in opd_logs)  # 2 prompts x 1 completion
    for r in report["rounds"]["opd"]:  # TVDF rounds: k or fewer (only reliable samples), or skipped when none is
        assert r["selected"] <= min(4, r["reliable"]) and (r["steps"] >= 1) == (r["selected"] > 0)
    assert (out / "plots" / "opd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_opd_demo_default_gains_over_its_start(tmp_path, seed):
    """The issue's bar, on two seeds: OPD with TVDF raises held-out mIoU by >= 5 over the student's start, from a
    teacher that is clearly stronger; GRPO's result for the same wall time is reported beside it. (2026-11-26: seed
    0 +5.7, seed 1 +4.0, seed 2 +1.9: met on seed 0 only, see the README.)"""
    out = tmp_path / "demo"
    assert main(["demo", "--method", "opd", "--out", str(out), "--seed", str(seed)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["gain_mIoU"]["opd"] >= 5.0, report
    assert report["teacher"]["mIoU"] >= report["before"]["mIoU"] + 10.0
    assert report["grpo"]["seconds"] > 0 and "mIoU" in report["grpo"]
