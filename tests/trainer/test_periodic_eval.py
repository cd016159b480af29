"""Evaluation during training (``eval_steps``, ``data.eval_file``, ``data.max_eval_samples``): the numbers of
``timegrpo eval`` on the same weights, at the steps it is due, without changing the training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from timegrpo.cli import main
from timegrpo.config import ConfigError, load_recipe
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm, save_tiny_vlm
from timegrpo.trainer.grpo import GRPOTrainer
from timegrpo.trainer.periodic_eval import PeriodicEval

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"


def test_eval_during_training_is_timegrpo_eval_on_the_same_weights(synth_dir, tmp_path):
    """A 3-step run with eval_steps 2 logs eval/* at steps 2 and 3 (the last); at step 3 they, and every
    prediction, are what `timegrpo eval` gives for the saved checkpoint with the recipe's prompt and frames."""
    tiny = save_tiny_vlm("qwen2_5_vl", tmp_path / "tiny")
    annotations = str(synth_dir / "train.jsonl")
    out = tmp_path / "run"
    assert main(["train", "--config", str(RECIPE), "--model.model_name_or_path", str(tiny),
                 "--data.train_file", annotations, "--data.video_dir", str(synth_dir),
                 "--data.frame_cache_dir", str(tmp_path / "frames"), "--data.eval_file", annotations,
                 "--data.max_eval_samples", "3", "--train.eval_steps", "2", "--train.eval_max_new_tokens", "12",
                 "--train.per_device_eval_batch_size", "2", "--max_steps", "3", "--num_generations", "2",
                 "--per_device_train_batch_size", "2", "--max_completion_length", "6", "--logging_steps", "5",
                 "--output_dir", str(out)]) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 3]  # logging_steps 5: logged because an evaluation ran
    for line in lines:
        assert {"eval/mIoU", "eval/R1@0.3", "eval/R1@0.5", "eval/R1@0.7", "eval/format_rate", "eval/unparsed",
                "eval/n", "eval/n_skipped", "reward", "loss"} <= set(line)
        assert line["eval/n"] == 3
    records = [json.loads(x) for x in (out / "eval" / "step-3.jsonl").read_text().splitlines()]
    assert len(records) == 3

    ev = tmp_path / "eval"
    assert main(["eval", "--model", str(out / "checkpoint-3"), "--annotations", annotations, "--videos",
                 str(synth_dir), "--out", str(ev), "--template", "short_think", "--limit", "3", "--batch_size", "2",
                 "--max_new_tokens", "12", "--fps", "2", "--min_pixels", "3136", "--max_pixels", "3136",
                 "--total_pixels", "null"]) == 0
    official = json.loads((ev / "metrics.json").read_text())
    for key in ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7", "format_rate", "unparsed", "n", "n_truncated"):
        assert lines[-1][f"eval/{key}"] == pytest.approx(official[key]), key
    predicted = {r["qid"]: r["completion"] for r in map(json.loads, (ev / "predictions.jsonl").read_text().splitlines())}
    assert {r["qid"]: r["completion"] for r in records} == predicted


def test_evaluating_changes_nothing_in_training(synth_dir, tmp_path):
    """The same parameters and training metrics with an evaluation after every step as without one."""
    overrides = ["--train.reward_funcs", "tiou,format", "--train.num_generations", "2", "--train.max_steps", "2",
                 "--train.max_completion_length", "6", "--train.per_device_train_batch_size", "2",
                 "--train.save_steps", "0"]
    runs = []
    for every in (0, 1):
        cfg = load_recipe(RECIPE, [*overrides, "--train.output_dir", str(tmp_path / str(every))])
        model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
        samples = load_split(synth_dir, "train")
        trainer = GRPOTrainer(cfg, prepare_policy(model), processor, samples, video_source(recommended_sampling()))
        if every:
            trainer.evaluator = PeriodicEval(samples[:2], template="short_think", every=every, max_new_tokens=5)
        history = trainer.train(progress=False)
        params = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        runs.append((params, history))
    (p0, h0), (p1, h1) = runs
    for name, value in p0.items():
        assert torch.equal(p1[name], value), name
    assert all("eval/mIoU" in h for h in h1) and not any("eval/mIoU" in h for h in h0)
    timing = ("step_time", "rollout_time")
    for a, b in zip(h0, h1, strict=True):
        assert {k: v for k, v in a.items() if k not in timing} == \
            {k: v for k, v in b.items() if k not in timing and not k.startswith("eval/")}


def test_due_steps_and_the_config_checks():
    ev = PeriodicEval([], template="think", every=3)
    assert [s for s in range(0, 11) if ev.due(s, total_steps=10)] == [3, 6, 9, 10]
    assert not PeriodicEval([], template="think", every=0).due(10, 10)
    with pytest.raises(ConfigError, match="train.eval_steps.*data.eval_file"):
        load_recipe(RECIPE, ["--train.eval_steps", "5", "--data.eval_file", "null"])
    with pytest.raises(ConfigError, match="sft.eval_steps"):
        load_recipe(RECIPE, ["--sft.eval_steps", "5", "--data.eval_file", "null"])
