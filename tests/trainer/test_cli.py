"""`timegrpo sft` then `timegrpo train` from the tiny recipe, as a user runs them (offline tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from timegrpo.cli import main
from timegrpo.config import load_recipe
from timegrpo.models.tiny import save_tiny_vlm

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml")


def test_sft_then_grpo_from_the_command_line(synth_dir, tmp_path):
    tiny = save_tiny_vlm("qwen2_5_vl", tmp_path / "tiny")
    data = ["--data.train_file", str(synth_dir / "train.jsonl"), "--data.video_dir", str(synth_dir),
            "--data.frame_cache_dir", str(tmp_path / "frames")]
    sft_out = tmp_path / "sft"
    assert main(["sft", "--config", RECIPE, "--model.model_name_or_path", str(tiny), *data,
                 "--max_steps", "2", "--per_device_train_batch_size", "4", "--output_dir", str(sft_out)]) == 0
    assert (sft_out / "final" / "config.json").is_file()
    assert [json.loads(x)["step"] for x in (sft_out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (sft_out / "checkpoint-2" / "state").is_dir()  # resumable, like a GRPO run
    assert (sft_out / "config.yaml").read_text().startswith("# timegrpo sft --config")

    out = tmp_path / "grpo"
    assert main(["train", "--config", RECIPE, "--model.model_name_or_path", str(sft_out / "final"), *data,
                 "--max_steps", "2", "--num_generations", "2", "--per_device_train_batch_size", "2",
                 "--max_completion_length", "6", "--logging_steps", "1", "--output_dir", str(out),
                 "--log_completions"]) == 0
    saved = load_recipe(out / "config.yaml", [])  # the resolved recipe reproduces the run
    assert saved.train.max_steps == 2 and saved.model.model_name_or_path == str(sft_out / "final")
    assert (out / "config.yaml").read_text().startswith("# timegrpo train --config")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2]
    assert {"rewards/tiou/mean", "rewards/format/mean", "vision_tower_calls"} <= set(lines[0])
    rows = [json.loads(x) for x in (out / "completions.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] * 4 + [2] * 4  # steps x prompts x G
    groups = [rows[i:i + 2] for i in range(0, len(rows), 2)]  # the G completions of a prompt side by side
    assert all(a["qid"] == b["qid"] for a, b in groups)
    train_qids = {json.loads(x)["qid"] for x in (synth_dir / "train.jsonl").read_text().splitlines()}
    assert len({a["qid"] for a, _ in groups} & train_qids) == 4  # four different training prompts in 2 steps
    for line in lines:  # the logged step reward is the mean over that step's logged completions
        rewards = [r["reward"] for r in rows if r["step"] == line["step"]]
        assert line["reward"] == pytest.approx(sum(rewards) / len(rewards))
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    assert (out / "checkpoint-2" / "state").is_dir()
