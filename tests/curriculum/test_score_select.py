"""``timegrpo curriculum score`` and ``select`` end to end on CPU: a tiny Qwen2.5-VL over synthetic videos through
the real rollout (one generate call per batch, the vision tower once per video), resuming after a crash,
refusing other settings; selection from hand-written scores, checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import timegrpo.rollout as rollout
from timegrpo.cli import main
from timegrpo.data.formats import load_annotations
from timegrpo.parsing import parse_answer
from timegrpo.spans import temporal_iou


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def score_argv(model: Path, ann: Path, out: Path, *extra: str) -> list[str]:
    return ["curriculum", "score", "--model", str(model), "--annotations", str(ann), "--out", str(out),
            "--n", "3", "--template", "no_think", "--batch-size", "2", "--max-new-tokens", "3", "--fps", "2",
            "--min-pixels", "3136", "--max-pixels", "3136", *extra]


class Counting:
    """Counts ``generate`` calls (prompts, completions) and videos through the vision tower; fails on a call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_on: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.videos = 0
        real_generate, real_encode = rollout.generate, rollout.encode_videos

        def generate(model, processor, inputs, params, features=None):
            if fail_on is not None and len(self.calls) + 1 == fail_on:
                raise RuntimeError("simulated crash")
            out = real_generate(model, processor, inputs, params, features)
            self.calls.append((int(inputs["input_ids"].shape[0]), len(out.completions)))
            return out

        def encode(model, pixels, grid):
            self.videos += int(grid.shape[0])
            return real_encode(model, pixels, grid)

        monkeypatch.setattr(rollout, "generate", generate)
        monkeypatch.setattr(rollout, "encode_videos", encode)


def test_score_runs_the_training_rollout_and_resumes(tiny_model, synth_dir, tmp_path, monkeypatch, capsys):
    ann, out = synth_dir / "train.jsonl", tmp_path / "scores.jsonl"
    crash = Counting(monkeypatch, fail_on=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(score_argv(tiny_model, ann, out, "--completions"))
    assert len(lines(out)) == 2 and crash.calls == [(2, 6)]
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"qid": "synth_0000')  # a kill in the middle of a line
    monkeypatch.undo()
    count = Counting(monkeypatch)
    assert main(score_argv(tiny_model, ann, out, "--completions")) == 0
    assert count.calls == [(2, 6)] and count.videos == 2  # 2 prompts x n 3 in one call; each video encoded once
    rows = lines(out)
    samples, _ = load_annotations(ann)
    assert [r["qid"] for r in rows] == [s.qid for s in samples]
    for r, s in zip(rows, samples):
        assert len(r["ious"]) == len(r["completions"]) == 3
        spans = [parse_answer(c, s.duration) for c in r["completions"]]
        assert r["ious"] == [temporal_iou(p, s.windows) for p in spans]
        assert r["unparsed"] == sum(p is None for p in spans) and 0 <= r["truncated"] <= 3
    settings = json.loads((tmp_path / "scores.config.json").read_text())
    assert settings["n"] == 3 and settings["sampling"]["do_sample"] is True and settings["video"]["fps"] == 2.0
    capsys.readouterr()
    assert main(score_argv(tiny_model, ann, out, "--completions", "--n", "2")) == 2  # other settings
    err = capsys.readouterr().err
    assert "other settings" in err and "n: 3 -> 2" in err and len(lines(out)) == 4
    assert main(score_argv(tiny_model, ann, out, "--n", "2", "--overwrite")) == 0
    assert [len(r["ious"]) for r in lines(out)] == [2, 2, 2, 2] and "completions" not in lines(out)[0]


def test_score_options_are_checked(capsys):
    assert main(["curriculum", "score", "--n", "4", "--do-sample", "false"]) == 2
    assert "greedy decoding gives one answer" in capsys.readouterr().err
    assert main(["curriculum", "select", "--method", "nope"]) == 2
    assert "timerft_refilter" in capsys.readouterr().err


def test_select_writes_moment_detr_with_the_scores(synth_dir, tmp_path, capsys):
    """Four pool samples with hand-written scores (means 0.6, 0.0, 0.2, 0.45); refilter k 2: kept 0, 3, 2 sorted
    desc (.6, .45, .2), linspace(0, 2, 2) = 0, 2 -> samples 0 and 2."""
    ann = synth_dir / "train.jsonl"
    samples, _ = load_annotations(ann)
    ious = [[0.6, 0.6], [0.0, 0.0], [0.4, 0.0], [0.5, 0.4]]
    scores = tmp_path / "scores.jsonl"
    scores.write_text("".join(json.dumps({"qid": s.qid, "ious": x, "unparsed": 0}) + "\n"
                              for s, x in zip(samples, ious)) + json.dumps({"qid": "extra", "ious": [1.0]}) + "\n")
    out = tmp_path / "sel" / "round1.jsonl"
    argv = ["curriculum", "select", "--method", "timerft_refilter", "--annotations", str(ann), "--scores",
            str(scores), "--k", "2", "--seed", "0", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    chosen, _ = load_annotations(out, "moment_detr")
    assert [s.qid for s in chosen] == [samples[0].qid, samples[2].qid]
    assert chosen[1].windows == samples[2].windows and Path(chosen[1].video).is_file()
    assert chosen[1].meta["ious"] == [0.4, 0.0] and chosen[1].meta["iou"] == pytest.approx(0.2)
    assert chosen[1].meta["difficulty_bucket"] == "hard" and chosen[0].meta["event"] == samples[0].meta["event"]
    assert summary["pool"] == {"n": 4, "mean_iou": pytest.approx(0.3125), "iou_zero": 1,
                               "buckets": {"easy": 1, "hard": 2, "medium": 1}}
    assert summary["selected"]["n"] == 2 and summary["unused_score_rows"] == 1
    assert json.loads(out.with_suffix(".summary.json").read_text())["method"] == "timerft_refilter"
    scores.write_text(json.dumps({"qid": samples[0].qid, "ious": [0.5]}) + "\n")
    assert main(argv) == 2 and "3 of 4 pool samples have no row" in capsys.readouterr().err
