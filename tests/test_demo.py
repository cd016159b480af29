"""`timegrpo demo`: the whole pipeline runs and reports what the issue asks for."""

from __future__ import annotations

import json

import pytest

from timegrpo.cli import main

KEYS = {"mIoU", "R1@0.3", "R1@0.5", "R1@0.7", "format_rate"}


def test_demo_small_run_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n-videos", "40", "--test-size", "8", "--sft-steps", "6",
               "--rl-steps", "3"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    for part in ("before", "after", "sft_continued"):
        assert set(report[part]) >= KEYS, part
        assert report[part]["n"] == 8
    assert report["steps"]["grpo"] == 3 and report["steps"]["sft"] == 6
    assert report["grpo_gain_mIoU"] == pytest.approx(report["after"]["mIoU"] - report["before"]["mIoU"], abs=0.01)
    assert (out / "plots" / "demo.png").stat().st_size > 0
    assert len((out / "predictions" / "after.jsonl").read_text().splitlines()) == 8


@pytest.mark.slow
def test_demo_default_grpo_gains_over_its_start(tmp_path):
    """The issue's bar: GRPO raises held-out mIoU by >= 5 over its starting checkpoint, format rate >= 95%."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["grpo_gain_mIoU"] >= 5.0, report
    assert report["after"]["format_rate"] >= 95.0
    assert report["timings_s"]["total"] <= 15 * 60
