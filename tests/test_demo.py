"""`timegrpo demo`: the whole pipeline runs and reports what the issue asks for."""

from __future__ import annotations

import json
import re

import pytest

from timegrpo.cli import main
from timegrpo.data.synthetic import load_split
from timegrpo.demo import constant_floor
from timegrpo.metrics import grounding_metrics
from timegrpo.parsing import parse_answer
from timegrpo.spans import temporal_iou

KEYS = {"mIoU", "R1@0.3", "R1@0.5", "R1@0.7", "format_rate"}
#: Time-R1's format: the whole stripped completion is a think block then an answer block.
THINK_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
SFT_STEPS, RL_STEPS, TEST_SIZE = 30, 3, 8  # 30 SFT steps: the tiny model answers in the format (20 do not)


def _rescore(records: list[dict], truth: dict[str, dict]) -> dict[str, float]:
    """The report's metrics recomputed from a predictions file: parse, IoU against test.jsonl, R1/mIoU."""
    spans = [parse_answer(r["completion"], truth[r["qid"]]["duration"]) for r in records]
    ious = [temporal_iou(s, truth[r["qid"]]["relevant_windows"]) for s, r in zip(spans, records, strict=True)]
    fmt = [bool(THINK_ANSWER.fullmatch(r["completion"].strip())) for r in records]
    return {**grounding_metrics(ious), "format_rate": 100.0 * sum(fmt) / len(fmt),
            "unparsed": sum(s is None for s in spans), "n": len(records)}


def test_demo_small_run_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n-videos", "40", "--test-size", str(TEST_SIZE), "--sft-steps",
               str(SFT_STEPS), "--rl-steps", str(RL_STEPS)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    truth = {r["qid"]: r for r in map(json.loads, (out / "data" / "test.jsonl").read_text().splitlines())}
    assert len(truth) == TEST_SIZE
    parsed = 0
    for part in ("before", "after", "sft_continued"):
        records = [json.loads(x) for x in (out / "predictions" / f"{part}.jsonl").read_text().splitlines()]
        assert [r["qid"] for r in records] == list(truth), part  # every test video once, in file order
        expected = _rescore(records, truth)
        assert set(report[part]) >= KEYS, part
        assert report[part] == pytest.approx(expected), part
        assert 0.0 <= report[part]["format_rate"] <= 100.0
        parsed += TEST_SIZE - expected["unparsed"]
    assert parsed > 0, "no prediction parsed: the metrics checked above would all be 0"
    assert report["grpo_gain_mIoU"] == round(report["after"]["mIoU"] - report["before"]["mIoU"], 2)
    assert report["sft_gain_mIoU"] == round(report["sft_continued"]["mIoU"] - report["before"]["mIoU"], 2)

    train, test = load_split(out / "data", "train"), load_split(out / "data", "test")
    floor = report["constant_floor"]
    assert floor == constant_floor(train, test)  # the best 0.5 s-grid window on train, scored on test
    window = tuple(floor["window"])
    assert {k: floor[k] for k in floor if k != "window"} == pytest.approx(
        grounding_metrics([temporal_iou(window, r["relevant_windows"]) for r in truth.values()]))

    assert report["steps"]["sft"] == SFT_STEPS and report["steps"]["grpo"] == RL_STEPS
    assert report["steps"]["sft_continued"] >= 1
    logged = [json.loads(x)["step"] for x in (out / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert logged[-1] == RL_STEPS and report["grpo_config"]["max_steps"] == RL_STEPS
    timings = report["timings_s"]
    assert sum(v for k, v in timings.items() if k != "total") <= timings["total"] + 0.05 * len(timings)
    assert (out / "plots" / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_demo_default_grpo_gains_over_its_start(tmp_path, seed):
    """The issue's bar, on two seeds: GRPO raises held-out mIoU by >= 5 over its starting checkpoint, format rate
    >= 95% (2026-11-26: +7.1 and +8.9)."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seed", str(seed)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["grpo_gain_mIoU"] >= 5.0, report
    assert report["after"]["format_rate"] >= 95.0
    assert report["timings_s"]["total"] <= 15 * 60
