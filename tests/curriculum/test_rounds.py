"""The rounds driver (``timegrpo curriculum timerft``): which model scores which file, what each round selects and
trains on, resuming; first with the scorer and the training subprocess replaced by recorders (hand-set IoUs,
selections worked out by hand), then end to end on CPU (slow): two TimeRFT rounds of the tiny recipe."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import timegrpo.curriculum.rounds as rounds
import timegrpo.curriculum.score as score_module
from timegrpo.cli import main
from timegrpo.config import load_recipe
from timegrpo.trainer.loop import STATE_FILE

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny_timerft_cpu.yaml"
# Round 1: the base model's IoU of pool samples q0..q7; timerft drops IoU 0 and, with k = 7 >= the 7 left, keeps all.
BASE = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.9]
# Round 2: round 1's model re-scores q1..q7; timerft_refilter keeps 0 < IoU <= 0.7 -> q1 (.05), q2 (.65), q3 (.7),
# q6 (.3), q7 (.5): 5 <= k, all of them. Round 3: round 2's model on those five; q2 -> .8 and q7 -> 0 leave.
ROUND1_MODEL = {"q1": 0.05, "q2": 0.65, "q3": 0.7, "q4": 0.72, "q5": 0.0, "q6": 0.3, "q7": 0.5}
ROUND2_MODEL = {"q1": 0.2, "q2": 0.8, "q3": 0.4, "q6": 0.3, "q7": 0.0}


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "pool_in.jsonl"
    path.write_text("".join(json.dumps({"qid": f"q{i}", "query": f"event {i}", "duration": 20.0, "vid": f"v{i}",
                                        "relevant_windows": [[2.0, 6.0]]}) + "\n" for i in range(8)))
    return path


class Fakes:
    """The scorer writes hand-set IoUs (by the model that scores); training makes an empty checkpoint."""

    def __init__(self, monkeypatch, tmp_path, fail_training: int | None = None):
        self.scored: list[tuple[str, str]] = []
        self.trained: list[dict] = []
        self.fail_training = fail_training
        self.ious = {"base": dict(zip([f"q{i}" for i in range(8)], BASE, strict=True)),
                     str(tmp_path / "out" / "round_1" / "train" / "checkpoint-2"): ROUND1_MODEL,
                     str(tmp_path / "out" / "round_2" / "train" / "checkpoint-2"): ROUND2_MODEL}
        monkeypatch.setattr(score_module, "run_score", self.score)
        monkeypatch.setattr(rounds.subprocess, "run", self.train)

    def score(self, cfg):
        qids = [r["qid"] for r in lines(cfg.annotations)]
        teacher = {}
        if cfg.teacher:  # like the scorer: the teacher's own file, written once, shared
            if not Path(cfg.teacher_scores).is_file():
                self.scored.append((cfg.teacher, Path(cfg.teacher_scores).name))
                Path(cfg.teacher_scores).write_text("".join(json.dumps({"qid": q, "ious": [self.ious[cfg.teacher][q]]})
                                                            + "\n" for q in qids))
            teacher = {r["qid"]: {"teacher_ious": r["ious"]} for r in lines(cfg.teacher_scores)}
        self.scored.append((cfg.model, Path(cfg.annotations).name))
        Path(cfg.out).write_text("".join(json.dumps({"qid": q, "ious": [self.ious[cfg.model][q]], **teacher.get(q, {})})
                                         + "\n" for q in qids))
        return {}

    def train(self, command, check):
        cfg = load_recipe(command[command.index("--config") + 1], [])
        t = cfg.train
        self.trained.append({"model": cfg.model.model_name_or_path, "file": Path(cfg.data.train_file).parent.name,
                             "epochs": t.num_train_epochs, "resume": t.resume_from_checkpoint,
                             "command": command})
        checkpoint(Path(t.output_dir) / "checkpoint-1")
        (Path(t.output_dir) / "checkpoint-9" / "state").mkdir(parents=True, exist_ok=True)  # incomplete: ignored
        if self.fail_training == len(self.trained):
            return subprocess.CompletedProcess(command, 1)
        checkpoint(Path(t.output_dir) / "checkpoint-2")
        return subprocess.CompletedProcess(command, 0)


def checkpoint(path: Path) -> None:
    """A complete checkpoint folder, as far as resuming is concerned: its counters file."""
    (path / "state").mkdir(parents=True, exist_ok=True)
    (path / "state" / STATE_FILE).write_text('{"format": 1, "step": 1}\n')


def argv(pool, tmp_path, *extra):
    return ["curriculum", "timerft", "--config", str(TINY), "--data.train_file", str(pool), "--data.video_dir", "none",
            "--model.model_name_or_path", "base", "--out", str(tmp_path / "out"), "--k", "7", *extra]


def qids(path) -> list[str]:
    return [r["qid"] for r in lines(path)]


def test_two_rounds_score_select_and_train_in_order(pool, tmp_path, monkeypatch, capsys):
    fakes = Fakes(monkeypatch, tmp_path)
    assert main(argv(pool, tmp_path, "--rounds", "2")) == 0
    out = tmp_path / "out"
    ckpt1 = str(out / "round_1" / "train" / "checkpoint-2")
    assert fakes.scored == [("base", "pool.jsonl"), (ckpt1, "selection.jsonl")]
    assert [(t["model"], t["file"], t["epochs"], t["resume"]) for t in fakes.trained] == [
        ("base", "round_1", 1.0, None), (ckpt1, "round_2", 1.0, None)]
    assert fakes.trained[0]["command"][1:] == ["-m", "timegrpo.train", "--config", str(out / "round_1/recipe.yaml")]
    assert qids(out / "round_1" / "selection.jsonl") == [f"q{i}" for i in range(1, 8)]
    assert qids(out / "round_2" / "selection.jsonl") == ["q1", "q2", "q3", "q6", "q7"]
    assert lines(out / "round_2" / "selection.jsonl")[1]["iou"] == 0.65  # this round's score in the sample's meta
    state = json.loads((out / "rounds.json").read_text())
    assert [r["selector"] for r in state["rounds"]] == ["timerft", "timerft_refilter"]
    assert state["final_model"] == str(out / "round_2" / "train" / "checkpoint-2")
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["rounds"] == 2

    # a rerun redoes nothing; more rounds continue from the last checkpoint
    assert main(argv(pool, tmp_path, "--rounds", "2")) == 0 and len(fakes.scored) == len(fakes.trained) == 2
    assert main(argv(pool, tmp_path, "--rounds", "3")) == 0
    assert fakes.scored[2:] == [(state["final_model"], "selection.jsonl")]
    assert qids(out / "round_3" / "selection.jsonl") == ["q1", "q3", "q6"]
    assert fakes.trained[2]["model"] == state["final_model"]


def test_a_failed_training_resumes_from_its_checkpoint(pool, tmp_path, monkeypatch, capsys):
    fakes = Fakes(monkeypatch, tmp_path, fail_training=1)
    assert main(argv(pool, tmp_path, "--rounds", "1")) == 2
    err = capsys.readouterr().err
    assert "round 1: training exited with status 1" in err and "rerun the same command: it resumes" in err
    assert not (tmp_path / "out" / "round_1" / "done.json").exists()
    assert main(argv(pool, tmp_path, "--rounds", "1")) == 0
    assert fakes.trained[1]["resume"] == str(tmp_path / "out" / "round_1" / "train" / "checkpoint-1")
    assert len(fakes.scored) == 1  # scoring and selection were finished: not redone


def test_other_settings_and_empty_selections_stop_with_a_message(pool, tmp_path, monkeypatch, capsys):
    fakes = Fakes(monkeypatch, tmp_path)
    assert main(argv(pool, tmp_path, "--rounds", "1")) == 0
    assert main(argv(pool, tmp_path, "--rounds", "1", "--k", "3")) == 2
    assert "holds rounds made with other settings (k: 7 -> 3)" in capsys.readouterr().err
    fakes.ious["base"] = {q: 0.0 for q in fakes.ious["base"]}
    assert main(argv(pool, tmp_path / "b", "--rounds", "1")) == 2
    assert "round 1: timerft kept none of the 8 samples" in capsys.readouterr().err
    assert main(argv(pool, tmp_path / "c", "--curriculum.strategy", "nope")) == 2
    assert "curriculum.strategy: 'nope' is not one of timerft" in capsys.readouterr().err


# TVDF: the teacher's IoU of q0..q7 (q2 unreliable: < 0.5) and round 1's student over the whole pool.
TEACHER = [0.9, 0.9, 0.4, 0.8, 0.9, 0.6, 0.7, 1.0]
STUDENT1 = [0.85, 0.2, 0.0, 0.1, 0.9, 0.3, 0.6, 0.5]


def test_tvdf_rounds_select_from_the_whole_pool_with_the_teachers_scores(pool, tmp_path, monkeypatch, capsys):
    fakes = Fakes(monkeypatch, tmp_path)
    fakes.ious["teacher"] = {f"q{i}": t for i, t in enumerate(TEACHER)}
    ckpt1 = str(tmp_path / "out" / "round_1" / "train" / "checkpoint-2")
    fakes.ious[ckpt1] = {f"q{i}": x for i, x in enumerate(STUDENT1)}
    args = ["curriculum", "tvdf", *argv(pool, tmp_path)[2:], "--curriculum.strategy", "tvdf", "--rounds", "2",
            "--k", "2", "--train.teacher_model_name_or_path", "teacher"]
    assert main(args) == 2
    assert "curriculum.score_do_sample: the teacher answers teacher_n = 4 times" in capsys.readouterr().err
    assert main([*args, "--score_do_sample", "true"]) == 0
    out = tmp_path / "out"
    # the teacher once; each round's student over the whole pool
    assert fakes.scored == [("teacher", "teacher_scores.jsonl"), ("base", "pool.jsonl"), (ckpt1, "pool.jsonl")]
    # round 1: delta = teacher - base: q0 .9, q1 .8, q3 .5, q4 .5, q5 .1, q6 .1, q7 .1 -> top 2: q0, q1
    # round 2: delta = teacher - round 1: q0 .05, q1 .7, q3 .7, q4 0, q5 .3, q6 .1, q7 .5 -> q1, q3
    assert qids(out / "round_1" / "selection.jsonl") == ["q0", "q1"]
    assert qids(out / "round_2" / "selection.jsonl") == ["q1", "q3"]
    assert [t["model"] for t in fakes.trained] == ["base", ckpt1]
    assert json.loads((out / "rounds.json").read_text())["settings"]["teacher"] == "teacher"


def test_round_recipe_and_launch_line(tmp_path):
    cfg = load_recipe(TINY, ["--curriculum.launch", "accelerate launch --config_file launch/zero3.yaml",
                             "--train.max_steps", "7", "--data.max_train_samples", "5"])
    r = rounds.round_recipe(cfg, 2, "ckpt", tmp_path / "sel.jsonl", tmp_path / "train")
    assert (r.model.model_name_or_path, r.data.train_file, r.data.format) == ("ckpt", str(tmp_path / "sel.jsonl"),
                                                                              "moment_detr")
    assert (r.train.max_steps, r.train.num_train_epochs, r.data.max_train_samples) == (-1, 1.0, None)
    assert r.train.output_dir == str(tmp_path / "train") and r.train.run_name == "tiny-timerft-round2"
    assert rounds.launch_command(cfg, Path("x.yaml")) == ["accelerate", "launch", "--config_file", "launch/zero3.yaml",
                                                          "-m", "timegrpo.train", "--config", "x.yaml"]


@pytest.mark.slow
def test_two_timerft_rounds_of_the_tiny_recipe_on_cpu(tmp_path):
    """The done-when check: model, data and a short SFT warm start made as the recipe's header says, then the
    command, in a fresh process, as a user runs it."""
    import os
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "timegrpo.cli"]

    def run(*args):
        proc = subprocess.run([*cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    run("tiny", "--family", "qwen2_5_vl", "--out", "outputs/tiny-qwen2.5-vl")
    run("data", "synth", "--out", "outputs/synth", "--n", "200", "--seed", "0")
    run("sft", "--config", str(REPO / "recipes" / "tiny_cpu.yaml"), "--sft.max_steps", "60",
        "--model.model_name_or_path", "outputs/tiny-qwen2.5-vl")
    proc = run("curriculum", "timerft", "--config", str(TINY))
    out = tmp_path / "outputs" / "tiny-timerft"
    assert json.loads(proc.stdout.splitlines()[-1])["rounds"] == 2
    pool = qids(out / "pool.jsonl")
    for r in (1, 2):
        folder = out / f"round_{r}"
        scores = lines(folder / "scores.jsonl")
        selected = lines(folder / "selection.jsonl")
        candidates = pool if r == 1 else qids(out / "round_1" / "selection.jsonl")
        assert sorted(row["qid"] for row in scores) == sorted(candidates)
        assert 1 <= len(selected) <= 12 and {s["qid"] for s in selected} <= set(candidates)
        ious = {row["qid"]: row["ious"][0] for row in scores}
        assert all(ious[s["qid"]] == s["iou"] > 0 for s in selected)  # timerft and the refilter drop IoU 0
        if r == 2:
            assert {s["qid"] for s in selected} == {q for q in candidates if 0 < ious[q] <= 0.7}  # all: <= k
        done = json.loads((folder / "done.json").read_text())
        assert Path(tmp_path / done["checkpoint"] / "config.json").is_file()
        assert (folder / "train" / "metrics.jsonl").is_file()
