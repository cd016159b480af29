"""The Boundary Reflection Agent: black frames over exactly the annotated window, the two variants' verdicts
against hand-worked answers, ``timegrpo curriculum reflect`` end to end (through the real rollout, resumable,
verdicts recomputed from the saved answers), and ``select`` dropping the flagged samples."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import timegrpo.rollout as rollout
from timegrpo.cli import main
from timegrpo.curriculum.reflect import hidden_source
from timegrpo.curriculum.reflection import grounding_verdict, hidden_frames, hidden_mask, instruction_verdict
from timegrpo.data.convert import write_moment_detr
from timegrpo.data.formats import load_annotations
from timegrpo.data.source import frame_times, video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.parsing import parse_ranges


# ------------------------------------------------------------------------------------------------ black frames
def test_hidden_frames_are_exactly_the_window_frames():
    frames = torch.arange(1, 9, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 2, 2).clone()
    times = [k / 2 for k in range(8)]  # 0.0 .. 3.5
    out = hidden_frames(frames, times, [(1.0, 2.0)])  # closed window: frames at 1.0, 1.5, 2.0
    assert hidden_mask(times, [(1.0, 2.0)]) == [False, False, True, True, True, False, False, False]
    assert out.shape == frames.shape
    assert out[:, 0, 0, 0].tolist() == [1.0, 2.0, 0.0, 0.0, 0.0, 6.0, 7.0, 8.0]
    assert torch.equal(frames[:, 0, 0, 0], torch.arange(1, 9, dtype=torch.float32))  # input untouched
    assert hidden_mask(times, [(0.25, 0.75), (3.5, 9.0)]) == [False, True, False, False, False, False, False, True]


def test_hidden_source_blacks_out_the_window_and_keeps_the_timestamps(synth_dir):
    sample = dataclasses.replace(load_split(synth_dir, "train")[0], windows=[(1.5, 3.0)])
    videos = video_source(recommended_sampling())
    frames, meta = videos(sample)
    hidden, hmeta = hidden_source(videos)(sample)
    times = frame_times(meta)
    assert hmeta == meta and frame_times(hmeta) == times == [k / 2 for k in range(len(times))]
    assert hidden.shape == frames.shape
    black = [k for k in range(len(times)) if hidden[k].abs().sum() == 0]
    assert black == [3, 4, 5, 6]  # 1.5, 2.0, 2.5, 3.0 s
    kept = [k for k in range(len(times)) if k not in black]
    assert torch.equal(hidden[kept], frames[kept]) and frames[black].abs().sum() > 0


# ------------------------------------------------------------------------------------------------ verdicts
def test_grounding_verdict_by_hand():
    # D = 20: tol 1 s, annotated (2, 5) widened to (1, 6); an answer flags with >= 2 s outside that
    w, d = [(2.0, 5.0)], 20.0
    # (12, 16) and (13, 16): 4 s and 3 s outside; IoU 3 / 4 = 0.75 >= 0.5 -> flagged
    assert grounding_verdict(w, [(12.0, 16.0), (13.0, 16.0), None], d)[0]
    # (12, 16) and (14, 18): IoU 2 / 6 = 0.33 < 0.5 -> they disagree
    flagged, reason = grounding_verdict(w, [(12.0, 16.0), (14.0, 18.0), (2.0, 5.0)], d)
    assert not flagged and "no 2 of them" in reason
    assert grounding_verdict(w, [(12.0, 16.0), (14.0, 18.0), None], d, min_iou=0.3)[0]  # 0.33 >= 0.3
    # (5.5, 7.9): 1.9 s outside (6, 7.9) -> does not flag on its own, even though two agree
    assert not grounding_verdict(w, [(5.5, 7.9), (5.5, 7.9), (5.5, 7.9)], d)[0]
    assert grounding_verdict(w, [(5.5, 8.0), (5.5, 8.0), None], d)[0]  # exactly 2 s: "at least"
    # agree 1: any answer outside; agree 3: all three pairwise
    assert grounding_verdict(w, [(12.0, 16.0), None, None], d, agree=1)[0]
    assert not grounding_verdict(w, [(12.0, 16.0), (13.0, 16.0), (8.0, 10.0)], d, agree=3)[0]
    assert grounding_verdict(w, [(12.0, 16.0), (13.0, 16.0), (12.5, 15.5)], d, agree=3)[0]
    # two annotated windows: an answer on the second one is explained by it
    assert not grounding_verdict([(2.0, 5.0), (12.0, 16.0)], [(12.0, 16.0)] * 3, d)[0]


def test_instruction_answers_and_verdict_by_hand():
    assert parse_ranges("<answer>12 to 16, 0-0.5</answer>", 20.0) == [(12.0, 16.0), (0.0, 0.5)]
    assert parse_ranges("<answer> None </answer>") == [] and parse_ranges("<answer>maybe</answer>") is None
    w, d = [(2.0, 5.0)], 20.0
    # answer A: (12, 16) -> 4 s; B: (0, 0.4) + (6.5, 8) -> 0.4 + 1.5 = 1.9 s outside (1, 6) -> no; C: none
    a, b, c = [(12.0, 16.0)], [(0.0, 0.4), (6.5, 8.0)], []
    assert not instruction_verdict(w, [a, b, c], d)[0]  # 1 of 3 flags, 2 needed
    assert instruction_verdict(w, [a, b, c], d, agree=1)[0]
    assert instruction_verdict(w, [a, [(0.0, 0.5), (6.5, 8.0)], c], d)[0]  # 0.5 + 1.5 = 2 s: B flags too
    # merged ranges count once: (6.5, 8) and (7, 9) -> (6.5, 9) = 2.5 s
    assert instruction_verdict(w, [[(6.5, 8.0), (7.0, 9.0)], a, None], d) == (
        True, "2 of 3 answers put the event elsewhere: 6.50-8.00,7.00-9.00; 12.00-16.00")


# ------------------------------------------------------------------------------------------------ the command
def _pool(synth_dir: Path, tmp_path: Path) -> Path:
    """The four synthetic videos (6-8 s) with annotated windows (0, 1) s: tol 1 s, zone (-1, 2)."""
    samples = [dataclasses.replace(s, windows=[(0.0, 1.0)]) for s in load_split(synth_dir, "train")]
    return write_moment_detr(samples, tmp_path / "pool" / "train.jsonl")


#: Per sample, the three answers; with agree 2 only sample 0 is flagged, with agree 1 samples 0, 1 and 2.
ANSWERS = [["<answer>3 to 6</answer>", "<answer>3.5 to 6</answer>", "<answer>0 to 1</answer>"],  # IoU 2.5/3
           ["<answer>3 to 5</answer>", "<answer>5 to 6</answer>", "no answer"],  # 2 s; 1 s
           ["<answer>2 to 4</answer>", "<answer>4 to 6</answer>", "<answer>0 to 2</answer>"],  # IoU 0
           ["x", "y", "z"]]


class Canned:
    """The real ``generate`` (tiny model, vision tower counted) with its completions replaced by :data:`ANSWERS`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_on: int | None = None) -> None:
        self.calls, self.videos, self.prompts = 0, 0, []
        real_generate, real_encode = rollout.generate, rollout.encode_videos
        self.next = 0

        def generate(model, processor, inputs, params, features=None):
            self.calls += 1
            if fail_on is not None and self.calls == fail_on:
                raise RuntimeError("simulated crash")
            out = real_generate(model, processor, inputs, params, features)
            n = int(inputs["input_ids"].shape[0])
            self.prompts += processor.tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True)
            out.completions = [c for i in range(self.next, self.next + n) for c in ANSWERS[i]]
            self.next += n
            return out

        def encode(model, pixels, grid):
            self.videos += int(grid.shape[0])
            return real_encode(model, pixels, grid)

        monkeypatch.setattr(rollout, "generate", generate)
        monkeypatch.setattr(rollout, "encode_videos", encode)


def reflect_argv(model: Path, ann: Path, out: Path, *extra: str) -> list[str]:
    return ["curriculum", "reflect", "--model", str(model), "--annotations", str(ann), "--out", str(out),
            "--variant", "grounding", "--template", "short_think", "--batch-size", "2", "--max-new-tokens", "2",
            "--fps", "2", "--min-pixels", "3136", "--max-pixels", "3136", *extra]


def test_reflect_flags_resumes_and_rejudges(tiny_model, synth_dir, tmp_path, monkeypatch, capsys):
    ann, out = _pool(synth_dir, tmp_path), tmp_path / "bra" / "bra.jsonl"
    qids = [s.qid for s in load_annotations(ann)[0]]
    Canned(monkeypatch, fail_on=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(reflect_argv(tiny_model, ann, out))
    rows = [json.loads(x) for x in (tmp_path / "bra" / "bra.answers.jsonl").read_text().splitlines()]
    assert [r["qid"] for r in rows] == qids[:2] and rows[1]["completions"] == ANSWERS[1] and not out.exists()
    monkeypatch.undo()
    canned = Canned(monkeypatch)
    canned.next = 2  # the resumed run asks for samples 2 and 3 only
    assert main(reflect_argv(tiny_model, ann, out)) == 0
    assert canned.calls == 1 and canned.videos == 2  # one generate call for 2 prompts x 3; each video encoded once
    assert all("happen?" in p and "black" not in p for p in canned.prompts)  # the grounding question
    judged, _ = load_annotations(out, "moment_detr")
    assert [s.meta["bra_flagged"] for s in judged] == [True, False, False, False]
    assert judged[0].meta["bra_reason"] == "2 of 3 answers agree outside the annotation: 3.00-6.00, 3.50-6.00"
    assert judged[0].meta["bra_answers"] == [[3.0, 6.0], [3.5, 6.0], [0.0, 1.0]]
    assert judged[3].meta["bra_answers"] == [None, None, None] and judged[1].windows == [(0.0, 1.0)]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_flagged"] == 1 and summary["n_done_before"] == 2 and summary["unparsed_answers"] == 4
    # another verdict setting reuses the saved answers: no generate call
    canned.calls = 0
    assert main(reflect_argv(tiny_model, ann, out, "--agree", "1")) == 0 and canned.calls == 0
    assert [s.meta["bra_flagged"] for s in load_annotations(out, "moment_detr")[0]] == [True, True, True, False]
    saved = json.loads((tmp_path / "bra" / "bra.summary.json").read_text())
    assert saved["flagged"] == qids[:3] and saved["agree"] == 1
    # other answers (more samples) need --overwrite
    assert main(reflect_argv(tiny_model, ann, out, "--samples", "2")) == 2
    assert "answers made with other settings" in capsys.readouterr().err


def test_reflect_instruction_variant_asks_its_own_question(tiny_model, synth_dir, tmp_path, monkeypatch):
    ann = _pool(synth_dir, tmp_path)
    canned = Canned(monkeypatch)
    argv = reflect_argv(tiny_model, ann, tmp_path / "i.jsonl", "--limit", "2")
    argv[argv.index("grounding")] = "instruction"
    argv[argv.index("short_think") - 1:argv.index("short_think") + 1] = []  # the variant's template
    assert main(argv) == 0 and len(canned.prompts) == 2
    assert all("replaced by black frames" in p and "<answer>none</answer>" in p for p in canned.prompts)
    # ANSWERS read as range lists: sample 0 -> (3, 6), (3.5, 6) flag (>= 2 s outside (-1, 2)); sample 1 -> 1 of 3
    assert [s.meta["bra_flagged"] for s in load_annotations(tmp_path / "i.jsonl")[0]] == [True, False]


def test_reflect_options_are_checked(capsys):
    assert main(["curriculum", "reflect", "--variant", "nope"]) == 2
    assert "grounding" in capsys.readouterr().err
    assert main(["curriculum", "reflect", "--samples", "3", "--agree", "4"]) == 2
    assert "agree" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ select
def test_select_drops_the_flagged_samples_first(synth_dir, tmp_path, capsys):
    """Pool of 4, sample 1 flagged; scores of the other three (means 0.6 easy, 0.4 medium, 0.1 hard); fraction
    0.75 of the whole pool -> k = 3 over strata (1, 1, 1) -> all three kept samples, never the flagged one."""
    base = load_split(synth_dir, "train")
    flags = [False, True, False, False]
    samples = [dataclasses.replace(s, meta={**s.meta, "bra_flagged": f}) for s, f in zip(base, flags)]
    ann = write_moment_detr(samples, tmp_path / "bra.jsonl")
    scores = tmp_path / "scores.jsonl"
    ious = {0: [0.6, 0.6], 2: [0.4, 0.4], 3: [0.2, 0.0]}
    scores.write_text("".join(json.dumps({"qid": base[i].qid, "ious": x}) + "\n" for i, x in ious.items()))
    argv = ["curriculum", "select", "--method", "dea_stratified", "--annotations", str(ann), "--scores",
            str(scores), "--fraction", "0.75", "--seed", "3", "--out", str(tmp_path / "subset.jsonl")]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    chosen, _ = load_annotations(tmp_path / "subset.jsonl")
    assert [s.qid for s in chosen] == [base[i].qid for i in (0, 2, 3)]
    assert [s.meta["difficulty_bucket"] for s in chosen] == ["easy", "medium", "hard"]
    assert summary["bra_dropped"] == 1 and summary["k"] == 3 and summary["n_annotations"] == 4
    assert summary["pool"]["n"] == 3 and summary["pool"]["buckets"] == {"easy": 1, "medium": 1, "hard": 1}
    # keeping the flagged sample needs its score
    assert main([*argv, "--drop-flagged", "false"]) == 2
    assert "1 of 4 pool samples have no row" in capsys.readouterr().err
    assert main([*argv[:-4], "--k", "2", "--fraction", "0.5", "--out", "x.jsonl"]) == 2
    assert "not both" in capsys.readouterr().err
