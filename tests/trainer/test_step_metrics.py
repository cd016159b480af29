"""A step's metrics are reduced as their names say (min, max, sums, token means, means over completions), so
they do not depend on the process layout; ``log_completions`` keeps every completion of the step."""

from __future__ import annotations

import json
import math
import socket

import pytest
import torch

from timegrpo.trainer.metrics import loss_metrics, value_metrics


def identity(metrics, how):  # one process: nothing to combine
    return metrics


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_loss_metrics_take_extremes_token_weights_and_sums():
    logs = [  # two micro-batches x two iterations; the second micro-batch has no token
        {"loss": 1.0, "policy_loss": 1.0, "kl": 0.1, "ratio/min": 0.9, "ratio/max": 1.1, "num_tokens": 3.0},
        {"loss": 3.0, "policy_loss": 3.0, "kl": 0.0, "ratio/min": math.nan, "ratio/max": math.nan, "num_tokens": 0.0},
        {"loss": 2.0, "policy_loss": 2.0, "kl": 0.3, "ratio/min": 0.7, "ratio/max": 1.5, "num_tokens": 3.0,
         "grad_norm": 4.0},
        {"loss": 6.0, "policy_loss": 6.0, "kl": 0.0, "ratio/min": math.nan, "ratio/max": math.nan, "num_tokens": 0.0},
    ]
    got = loss_metrics(logs, identity, iterations=2)
    assert got["ratio/min"] == 0.7 and got["ratio/max"] == 1.5  # not the means 0.8 and 1.3
    assert got["kl"] == pytest.approx((0.1 * 3 + 0.3 * 3) / 6)  # token-weighted: the empty micro-batch weighs 0
    assert got["num_tokens"] == 3.0  # tokens of the step, counted once per iteration
    assert got["loss"] == 3.0 and got["policy_loss"] == 3.0 and got["grad_norm"] == 4.0
    empty = loss_metrics([logs[1]], identity)
    assert math.isnan(empty["ratio/min"]) and math.isnan(empty["ratio/max"])


def test_value_metrics_are_over_every_completion_of_the_step():
    a, b = torch.tensor([1.0, float("nan"), 3.0]), torch.tensor([4.0, 10.0])
    got = value_metrics({"rewards/tiou/mean": [a, b], "iou": [a[:2], torch.tensor([float("nan")])]}, identity)
    every = torch.tensor([1.0, 3.0, 4.0, 10.0])
    assert got["rewards/tiou/mean"] == pytest.approx(float(every.mean()))
    assert got["rewards/tiou/std"] == pytest.approx(float(every.std()))  # not the mean of the two stds
    assert got["iou"] == 1.0 and "iou_std" not in got and "iou/std" not in got


def test_two_processes_log_what_one_process_logs(two_layouts, synth_dir, tmp_path):
    """2 processes x 1 micro-batch and 1 process x 2 micro-batches, 2 iterations, beta 0.04, evaluation every
    step: the same min/max ratios, token counts, KL, reward stds and eval metrics (the evaluation sharded over
    the processes), and completions.jsonl holds all 4 completions of a step in the same order."""
    common = ["--train.reward_funcs", "test_length,format", "--train.num_generations", "2",
              "--train.max_completion_length", "8", "--train.per_device_train_batch_size", "1",
              "--train.max_steps", "2", "--train.save_steps", "0", "--train.logging_steps", "1",
              "--train.beta", "0.04", "--train.num_iterations", "2", "--train.loss_type", "grpo",
              "--train.log_completions", "true", "--train.eval_steps", "1", "--train.eval_max_new_tokens", "6",
              "--data.eval_file", str(synth_dir / "train.jsonl"), "--data.max_eval_samples", "3",
              "--data.video_dir", str(synth_dir)]
    one, r0 = two_layouts("grpo", *common, port=free_port())
    keys = ("reward", "reward_std", "rewards/test_length/std", "rewards/format/mean", "kl", "ratio/min",
            "ratio/max", "ratio/mean", "num_tokens", "clip_ratio/region_mean", "completions/mean_length",
            "eval/mIoU", "eval/n", "eval/format_rate", "eval/unparsed")
    for a, b in zip(one["history"], r0["history"], strict=True):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
        assert a["ratio/min"] < 1 < a["ratio/max"]  # the second iteration moved the policy
        assert a["eval/n"] == 3
    rows = {name: [json.loads(x) for x in (tmp_path / name / "completions.jsonl").read_text().splitlines()]
            for name in ("one", "two")}
    assert [r["step"] for r in rows["one"]] == [1] * 4 + [2] * 4  # both micro-batches, not only the last
    for a, b in zip(rows["one"], rows["two"], strict=True):
        assert (a["qid"], a["completion"]) == (b["qid"], b["completion"])
        assert a["reward"] == pytest.approx(b["reward"]) and a["advantage"] == pytest.approx(b["advantage"])
