"""TRL rewards, unchanged, inside ``timegrpo train``: TRL's own ``think_format_reward`` (``trl.rewards``), a reward
written to TRL's protocol that asserts the form of every argument (``trl_style_rewards.py``) and an async one, as
a user runs them; what ``log_metric`` logs lands in metrics.jsonl and what ``log_extra`` reports in
completions.jsonl. Once in-process, once under ``accelerate launch`` (ZeRO-3) with 2 CPU processes (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from timegrpo.cli import main

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RECIPE = str(REPO / "recipes" / "tiny_cpu.yaml")
REWARDS = "trl.rewards:think_format_reward,trl_style_rewards:my_trl_style_reward,trl_style_rewards:async_judge"
FORMAT, MINE, JUDGE = REWARDS.split(",")


def run_args(tiny_model, synth_dir, out, frames):
    return ["--config", RECIPE, "--model.model_name_or_path", str(tiny_model),
            "--data.train_file", str(synth_dir / "train.jsonl"), "--data.video_dir", str(synth_dir),
            "--data.frame_cache_dir", str(frames), "--train.reward_funcs", REWARDS,
            "--train.reward_weights", "1,1,1", "--max_steps", "2", "--num_generations", "2",
            "--per_device_train_batch_size", "2", "--max_completion_length", "6", "--logging_steps", "1",
            "--save_steps", "0", "--output_dir", str(out), "--log_completions"]


def check_logs(out, processes):
    """metrics.jsonl and completions.jsonl of a 2-step run: each reward's mean, the log_metric scalars and the
    log_extra column agree with the completions, recomputed here from their text."""
    from trl.rewards import think_format_reward

    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in (out / "completions.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert len(rows) == 2 * 2 * 2 * processes  # steps x prompts x G x processes
    for line in lines:
        step = [r for r in rows if r["step"] == line["step"]]
        texts = [r["completion"] for r in step]
        fmt = think_format_reward([[{"role": "assistant", "content": t}] for t in texts])
        mine = [len(t) / 50.0 for t in texts]
        judge = [0.5 if any(ch.isdigit() for ch in t) else None for t in texts]
        for r, *parts in zip(step, fmt, mine, judge, strict=True):
            assert r["reward"] == pytest.approx(sum(p for p in parts if p is not None))
            assert 1 <= r["n_tokens"] <= 6  # the log_extra column: up to max_completion_length tokens
        assert line[f"rewards/{FORMAT}/mean"] == pytest.approx(sum(fmt) / len(fmt))
        assert line[f"rewards/{MINE}/mean"] == pytest.approx(sum(mine) / len(mine))
        applied = [j for j in judge if j is not None]
        assert line.get(f"rewards/{JUDGE}/mean", float("nan")) == pytest.approx(
            sum(applied) / len(applied) if applied else float("nan"), nan_ok=True)
        # log_metric: the global step the rewards saw (0 while step 1 is drawn) and the mean completion length
        # over every call of the step on every process, which is the mean of the n_tokens column
        assert line["trl_style/global_step"] == line["step"] - 1
        assert line["trl_style/mean_tokens"] == pytest.approx(sum(r["n_tokens"] for r in step) / len(step))
    return lines


def test_trl_rewards_train_unchanged(tiny_model, synth_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    import trl_style_rewards

    trl_style_rewards.CALLS.clear()
    out = tmp_path / "run"
    assert main(["train", *run_args(tiny_model, synth_dir, out, tmp_path / "frames")]) == 0
    check_logs(out, processes=1)
    # trainer_state: global_step, max_steps and epoch (prompts trained on / the 8 training samples) per call
    calls = trl_style_rewards.CALLS
    assert [(c["global_step"], c["max_steps"], c["epoch"], c["n"]) for c in calls] == [(0, 2, 0.0, 4), (1, 2, 0.25, 4)]
    assert all(c["qid"][0] == c["qid"][1] and c["qid"][2] == c["qid"][3] for c in calls)  # prompt-major rows


@pytest.mark.slow
def test_trl_rewards_under_accelerate_launch_with_two_processes(tiny_model, synth_dir, tmp_path, free_port):
    """``accelerate launch --config_file launch/zero3.yaml --num_processes 2`` (DeepSpeed's CPU accelerator, gloo):
    the log_metric names are gathered and their values averaged over both processes, and completions.jsonl holds
    both processes' completions with their log_extra column."""
    pytest.importorskip("deepspeed")
    out = tmp_path / "run"
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(REPO / "launch" / "zero3.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()),
           "-m", "timegrpo.train", *run_args(tiny_model, synth_dir, out, tmp_path / "frames")]
    path = os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": path}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    check_logs(out, processes=2)
