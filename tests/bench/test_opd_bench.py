"""`timegrpo bench --method opd`: Video-OPD's step next to GRPO's on the same prompts (no timing thresholds)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

from timegrpo.cli import main
from timegrpo.models.tiny import save_tiny_vlm

P, G, L = 2, 4, 6
WORK = ["--frames", "4", "--size", "56", "--prompts", str(P), "--num-generations", str(G), "--completion-len", str(L),
        "--steps", "2", "--warmup", "1"]


def test_opd_bench_times_both_methods_on_the_same_prompts(tmp_path):
    md = tmp_path / "OPD.md"
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["bench", "--method", "opd", *WORK, "--json", "--markdown", str(md), "--workdir", str(tmp_path)]) == 0
    r = json.loads(out.getvalue())
    grpo, opd = r["grpo"], r["opd"]
    assert r["completions_per_step"] == {"grpo": P * G, "opd": P}
    assert len(grpo["step_times"]) == len(opd["step_times"]) == 2 and len(opd["warmup_step_times"]) == 1
    # the same prompts: equal prompt lengths per row, and GRPO's step holds G times OPD's tokens (G rows per prompt)
    assert grpo["prompt_tokens_per_row"] == opd["prompt_tokens_per_row"] > grpo["video_pad_per_prompt"] > 0
    assert grpo["completion_len"] == opd["completion_len"] == L
    assert grpo["tokens_per_step"] == G * opd["tokens_per_step"] == G * P * (opd["prompt_tokens_per_row"] + L)
    # OPD's step runs the student's and the teacher's vision towers once per prompt each
    assert opd["vision_tower"]["inputs_per_step"] == 2 * P and grpo["vision_tower"]["inputs_per_step"] == P
    assert opd["phases"]["logprob"] > 0  # the teacher's forward
    assert r["step_time_ratio"] == pytest.approx(opd["step_time"] / grpo["step_time"])
    assert r["paper_step_time_ratio"] == 0.2
    text = md.read_text()
    assert f"| {r['workload']} | {P} | {G} | {grpo['step_time']:.3f} | {opd['step_time']:.3f} |" in text


def test_opd_bench_refusals(tmp_path, capsys):
    assert main(["bench", "--method", "opd", "--vs-trl", *WORK]) == 2
    assert "workload.vs_trl: compares GRPO with TRL's trainer" in capsys.readouterr().err
    assert main(["bench", "--teacher", str(tmp_path)]) == 2
    assert "teacher: is for --method opd only" in capsys.readouterr().err
    other = save_tiny_vlm("qwen2_5_vl", tmp_path / "other", corpus=["zebra giraffe hippopotamus quokka"])
    assert main(["bench", "--method", "opd", "--teacher", str(other), *WORK, "--workdir", str(tmp_path)]) == 2
    assert f"the teacher '{other}' does not share the tokenizer" in capsys.readouterr().err


def test_opd_bench_charges_the_teachers_video_encoding_to_its_logprob_phase(tmp_path, monkeypatch):
    """The teacher encodes the videos with its own vision tower (the trainer module's only ``encode_videos``
    call); a planted 0.2 s in that call must land in OPD's ``logprob`` phase, not in ``other``."""
    import time

    import timegrpo.trainer.grpo as trainer_module

    real = trainer_module.encode_videos

    def slow(*args, **kwargs):
        time.sleep(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "encode_videos", slow)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["bench", "--method", "opd", *WORK, "--json", "--workdir", str(tmp_path)]) == 0
    opd, grpo = json.loads(out.getvalue())["opd"], json.loads(out.getvalue())["grpo"]
    assert opd["phases"]["logprob"] >= 0.2 > opd["phases"]["other"]
    assert grpo["phases"]["logprob"] < 0.2  # GRPO has no teacher: the planted call never runs on its side
