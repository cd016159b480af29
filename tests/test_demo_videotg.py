"""`timegrpo demo --method videotg`: every stage runs and the report says what its files say."""

from __future__ import annotations

import json

import pytest

from timegrpo.cli import main
from timegrpo.curriculum.difficulty import difficulty_bucket
from timegrpo.data.formats import load_annotations
from timegrpo.data.synthetic import load_split
from timegrpo.demo import DemoConfig, demo_methods
from timegrpo.demo_videotg import precision_recall
from timegrpo.metrics import grounding_metrics
from timegrpo.parsing import parse_answer
from timegrpo.spans import temporal_iou

SMALL = ["--n-videos", "40", "--test-size", "8", "--sft-steps", "30", "--rl-steps", "3", "--curriculum-steps", "2",
         "--budget", "0.25", "--dea-n", "2", "--partial-share", "0.3", "--agent-videos", "12", "--agent-steps", "4",
         "--threads", "1"]


def _lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_demo_methods_are_registered(capsys):
    assert {"grounding", "videotg"} <= set(demo_methods().names()) and DemoConfig().method == "grounding"
    assert main(["demo", "--method", "nope"]) == 2
    assert "videotg" in capsys.readouterr().err


def test_videotg_demo_small_run_writes_the_report(tmp_path):
    out = tmp_path / "vt"
    assert main(["demo", "--method", "videotg", "--out", str(out), *SMALL]) == 0
    report = json.loads((out / "report.json").read_text())
    train = load_split(out / "data", "train")
    truth = [s.meta["planted_partial"] for s in train]
    assert len(train) == 32 and sum(truth) >= 3  # planted in ~30% of the videos

    # the instruction agent: its own videos (another seed), half planted, none of the pool's
    own = load_split(out / "agent_data", "train")
    assert len(own) == 12 and {s.meta["planted_partial"] for s in own} == {True, False}
    assert (out / "agent" / "config.json").is_file() and report["bra"]["agent"] == str(out / "agent")
    # BRA: precision/recall recomputed from each variant's file against the synthetic truth
    for part, name, variant in (("bra", "bra.jsonl", "instruction"), ("bra_compare", "bra_compare.jsonl", "grounding")):
        judged, _ = load_annotations(out / "curriculum" / name)
        assert [s.qid for s in judged] == [s.qid for s in train] and report[part]["variant"] == variant
        flags = [s.meta["bra_flagged"] for s in judged]
        assert {k: report[part][k] for k in ("precision", "recall", "tp", "fp", "fn", "n")} == precision_recall(
            flags, truth)
        assert report[part]["flagged"] == sum(flags) and report[part]["planted"] == sum(truth)
        assert all(len(s.meta["bra_answers"]) == 3 and s.meta["bra_reason"] for s in judged)
    flagged = [s.meta["bra_flagged"] for s in load_annotations(out / "curriculum" / "bra.jsonl")[0]]

    # DEA: dea_n answers per query, buckets of their mean IoU
    scores = {r["qid"]: r["ious"] for r in _lines(out / "curriculum" / "dea_scores.jsonl")}
    assert set(scores) == {s.qid for s in train} and all(len(x) == 2 for x in scores.values())
    kept = [s for s, f in zip(train, flagged) if not f]
    buckets = [difficulty_bucket(scores[s.qid]) for s in kept]
    assert report["dea"]["buckets"] == {b: buckets.count(b) for b in set(buckets)}

    # the subset: round(0.25 * 32) = 8 of the unflagged samples, each with its bucket
    subset, _ = load_annotations(out / "curriculum" / "subset.jsonl")
    assert len(subset) == report["subset"]["n"] == min(8, len(kept)) and report["subset"]["k"] == 8
    assert report["subset"]["bra_dropped"] == sum(flagged)
    assert {s.qid for s in subset} <= {s.qid for s in kept}
    assert all(s.meta["difficulty_bucket"] == difficulty_bucket(scores[s.qid]) for s in subset)

    # both GRPO runs: steps, samples, and metrics recomputed from their predictions
    test = {r["qid"]: r for r in _lines(out / "data" / "test.jsonl")}
    for arm, steps, n in (("curriculum", 2, len(subset)), ("full", 3, len(train))):
        got = report[arm]
        assert got["steps"] == steps and got["samples"] == n and got["wall_s"] > 0
        preds = _lines(out / "predictions" / f"{arm}.jsonl")
        ious = [temporal_iou(parse_answer(p["completion"], test[p["qid"]]["duration"]),
                             test[p["qid"]]["relevant_windows"]) for p in preds]
        expected = grounding_metrics(ious)
        assert {k: got[k] for k in ("mIoU", "R1@0.5", "R1@0.7")} == pytest.approx(
            {k: expected[k] for k in ("mIoU", "R1@0.5", "R1@0.7")})
    assert isinstance(report["curriculum"]["masking"], str) and report["curriculum"]["masking"]
    # masking really runs in the curriculum arm (the trainer logs it), and blacks out frames of its hard samples
    logged = _lines(out / "grpo_curriculum" / "metrics.jsonl")
    assert all("masking/masked_share" in m for m in logged)
    if any(s.meta["difficulty_bucket"] == "hard" for s in subset):
        assert report["curriculum"]["masked_share_mean"] > 0
    assert report["full"]["masked_share_mean"] == 0.0
    assert report["curriculum_minus_full_mIoU"] == round(report["curriculum"]["mIoU"] - report["full"]["mIoU"], 2)
    assert _lines(out / "grpo_curriculum" / "metrics.jsonl")[-1]["step"] == 2


@pytest.mark.slow
def test_videotg_demo_default_meets_the_bra_bar(tmp_path):
    """The issue's bar: on the planted partial annotations BRA reaches precision >= 0.8 and recall >= 0.6."""
    out = tmp_path / "vt"
    assert main(["demo", "--method", "videotg", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["bra"]["precision"] >= 0.8 and report["bra"]["recall"] >= 0.6, report["bra"]
    assert report["timings_s"]["total"] <= 15 * 60
