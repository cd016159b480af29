"""Video-OPD's TVDF: the reliability filter, the disagreement and every selector against numbers worked out by hand;
``curriculum select --method tvdf``; the scorer's ``--teacher`` pass (teacher_ious beside ious, resumable)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import timegrpo.curriculum.score as score_module
from timegrpo.cli import main
from timegrpo.curriculum.tvdf import TVDF_SELECTORS, delta_buckets, equal_quotas, reliable

# sample: student ious, teacher ious  -> teacher mean, delta (teacher mean - student mean)
STUDENT = [[0.2], [0.1, 0.3], [0.6], [0.0], [0.9], [0.3]]
TEACHER = [[0.6, 0.8], [0.4, 0.4], [0.9, 0.7], [0.5, 0.5], [0.6], [1.0]]
# q0: 0.7, +0.5 | q1: 0.4, unreliable (< 0.5) | q2: 0.8, +0.2 | q3: 0.5 (reliable: >=), +0.5 | q4: 0.6, -0.3 |
# q5: 1.0, +0.7.  Reliable, delta descending: q5 .7, q0 .5, q3 .5 (q0 first: earlier), q2 .2, q4 -.3.


def test_reliability_and_top_k():
    assert reliable(TEACHER) == [0, 2, 3, 4, 5]
    top = TVDF_SELECTORS.get("tvdf")
    assert top(STUDENT, TEACHER, 2, 0) == [0, 5] and top(STUDENT, TEACHER, 3, 0) == [0, 3, 5]
    for name in TVDF_SELECTORS.names():  # more than the reliable ones: all of them, never q1
        assert TVDF_SELECTORS.get(name)(STUDENT, TEACHER, 9, 0) == [0, 2, 3, 4, 5], name


def test_evenly_spaced_over_sorted_delta():
    even = TVDF_SELECTORS.get("tvdf_even")
    # ranked [q5, q0, q3, q2, q4]: linspace(0, 4, 3) = 0, 2, 4 -> q5, q3, q4; linspace(0, 4, 4) -> 0, 1, 3, 4
    assert even(STUDENT, TEACHER, 3, 0) == [3, 4, 5]
    assert even(STUDENT, TEACHER, 4, 0) == [0, 2, 4, 5]


def test_equal_width_buckets():
    # delta range [-0.3, 0.7] in widths of 0.2: q4 -> 0, q2 (.2) -> 2, q0 q3 (.5) and q5 (.7) -> 4
    assert delta_buckets([0.5, 0.2, 0.5, -0.3, 0.7]) == [4, 2, 4, 0, 4]
    assert equal_quotas([1, 0, 1, 0, 3], 3) == [1, 0, 1, 0, 1] and equal_quotas([1, 0, 1, 0, 3], 4) == [1, 0, 1, 0, 2]
    buckets = TVDF_SELECTORS.get("tvdf_buckets")
    for seed in range(20):
        three, four = buckets(STUDENT, TEACHER, 3, seed), buckets(STUDENT, TEACHER, 4, seed)
        assert {2, 4} <= set(three) and len(set(three) & {0, 3, 5}) == 1
        assert {2, 4} <= set(four) and len(set(four) & {0, 3, 5}) == 2
    assert len({tuple(buckets(STUDENT, TEACHER, 3, s)) for s in range(20)}) == 3  # the seed draws inside a bucket


def test_gaussian_weights_around_0_9():
    gaussian = TVDF_SELECTORS.get("tvdf_gaussian")
    # weights exp(-(delta - 0.9)^2 / 0.08): q5 e^-0.5, q0 and q3 e^-2, q2 e^-6.125, q4 e^-18
    w = {5: math.exp(-0.5), 0: math.exp(-2), 3: math.exp(-2), 2: math.exp(-6.125), 4: math.exp(-18)}
    share = w[5] / sum(w.values())  # 0.688
    picks = [gaussian(STUDENT, TEACHER, 1, seed)[0] for seed in range(3000)]
    assert abs(picks.count(5) / 3000 - share) < 0.03 and 1 not in picks
    assert abs(picks.count(0) / 3000 - w[0] / sum(w.values())) < 0.03
    assert gaussian(STUDENT, TEACHER, 2, 7) == gaussian(STUDENT, TEACHER, 2, 7)


def write_pool(tmp_path: Path, teacher: bool = True) -> tuple[Path, Path]:
    pool, scores = tmp_path / "pool.jsonl", tmp_path / "scores.jsonl"
    pool.write_text("".join(json.dumps({"qid": f"q{i}", "query": "e", "duration": 10.0, "vid": f"v{i}",
                                        "relevant_windows": [[1.0, 2.0]]}) + "\n" for i in range(6)))
    scores.write_text("".join(json.dumps({"qid": f"q{i}", "ious": s, **({"teacher_ious": t} if teacher else {})})
                              + "\n" for i, (s, t) in enumerate(zip(STUDENT, TEACHER, strict=True))))
    return pool, scores


def test_select_command_with_a_teacher_selector(tmp_path, capsys):
    pool, scores = write_pool(tmp_path)
    out = tmp_path / "sel.jsonl"
    assert main(["curriculum", "select", "--method", "tvdf", "--annotations", str(pool), "--scores", str(scores),
                 "--k", "2", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["qid"] for r in rows] == ["q0", "q5"] and [round(r["delta"], 6) for r in rows] == [0.5, 0.7]
    assert rows[1]["teacher_ious"] == [1.0] and rows[1]["ious"] == [0.3]
    summary = json.loads((tmp_path / "sel.summary.json").read_text())
    assert summary["pool"]["reliable"] == 5 and summary["selected"]["mean_delta"] == pytest.approx(0.6)
    capsys.readouterr()
    (tmp_path / "bare").mkdir()
    pool, scores = write_pool(tmp_path / "bare", teacher=False)
    assert main(["curriculum", "select", "--method", "tvdf", "--annotations", str(pool), "--scores", str(scores),
                 "--k", "2", "--out", str(out)]) == 2
    assert "no teacher_ious" in capsys.readouterr().err


def test_scorer_teacher_pass(tiny_model, synth_dir, tmp_path, monkeypatch):
    loads = []
    real = score_module._load_model
    monkeypatch.setattr(score_module, "_load_model", lambda cfg, name: loads.append(name) or real(cfg, name))
    out = tmp_path / "scores.jsonl"
    argv = ["curriculum", "score", "--model", str(tiny_model), "--teacher", str(tiny_model), "--teacher-n", "3",
            "--annotations", str(synth_dir / "train.jsonl"), "--out", str(out), "--n", "2", "--template", "no_think",
            "--max-new-tokens", "3", "--fps", "2", "--min-pixels", "3136", "--max-pixels", "3136"]
    assert main(argv) == 0 and loads == [str(tiny_model)] * 2  # the teacher, then the student
    teacher = {r["qid"]: r for r in map(json.loads, (tmp_path / "scores.teacher.jsonl").read_text().splitlines())}
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == len(teacher) == 4
    for r in rows:
        assert len(r["ious"]) == 2 and r["teacher_ious"] == teacher[r["qid"]]["ious"] and len(r["teacher_ious"]) == 3
    assert main(argv) == 0 and len(loads) == 2  # all done: no model is loaded again
    assert main([*argv, "--teacher-n", "2"]) == 2  # the teacher's settings are the scores' settings
