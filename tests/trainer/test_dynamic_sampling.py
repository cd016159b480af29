"""Dynamic sampling (DAPO): trained groups all carry signal, discards are counted, resume and layouts agree."""

from __future__ import annotations

import json
import logging
import socket
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from timegrpo.config import load_recipe
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.trainer.dynamic import CURSOR, assemble, choose, groups_of
from timegrpo.trainer.grpo import GRPOTrainer

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"
# Even-numbered synthetic samples (synth_00000, ...) score 1.0 whatever the completion: zero variance, no signal.
# The others score the completion's length (a tiny random model's completions differ in length).
REWARDS = textwrap.dedent("""
    def half_constant(completions, qid, log_extra, **columns):
        log_extra("reported_qid", list(qid))  # must reach completions.jsonl beside its own completion
        return [1.0 if int(q[-1]) % 2 == 0 else len(c[0]["content"]) / 50.0 for c, q in zip(completions, qid)]

    def constant(completions, **columns):
        return [1.0] * len(completions)

    def alternating(completions, **columns):  # every group of an even size has signal
        return [float(i % 2) for i in range(len(completions))]
""")
FAST = ["--train.reward_funcs", "dyn_rewards:half_constant", "--train.reward_weights", "1", "--train.num_generations", "4",
        "--train.max_completion_length", "8", "--train.per_device_train_batch_size", "1", "--train.save_steps", "0",
        "--train.logging_steps", "1", "--train.dynamic_sampling", "true", "--train.max_resample", "4"]


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("dyn_rewards")
    (path / "dyn_rewards.py").write_text(REWARDS)
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))
    sys.modules.pop("dyn_rewards", None)


def make_trainer(synth_dir, out, *overrides, seed=0):
    cfg = load_recipe(RECIPE, [*FAST, "--train.output_dir", str(out), *overrides])
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=seed)
    return GRPOTrainer(cfg, prepare_policy(model), processor, load_split(synth_dir, "train"),
                       video_source(recommended_sampling()))


def params_of(trainer):
    return {n: p.detach().clone() for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_choose_takes_the_first_groups_with_signal_then_tops_up():
    assert choose([True, False, True, True], 2) == ([0, 2], 0)
    assert choose([False, False, True], 3) == ([0, 1, 2], 2)
    assert choose([False] * 4, 2) == ([0, 1], 2)


def test_a_group_reassembled_from_token_ids_gives_the_same_log_probs(reward_dir, synth_dir, tmp_path):
    from timegrpo.models.vision import encode_videos
    from timegrpo.rollout import completion_logps

    trainer = make_trainer(synth_dir, tmp_path, "--train.max_steps", "1", "--train.per_device_train_batch_size", "2")
    samples = trainer.samples[:2]
    inputs = trainer.prompt_inputs(samples, 0)
    batch, rewards, _ = trainer.draw(inputs, samples, seed=5)
    groups = groups_of(batch, rewards, [10, 11], [0, 1])
    assert [g.position for g in groups] == [10, 11] and groups[1].rewards == rewards[4:].tolist()
    feats = encode_videos(trainer.model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    again = assemble(inputs, groups, feats, trainer.processor.tokenizer.pad_token_id)
    assert torch.equal(again.completion_mask, batch.completion_mask)
    assert torch.equal(again.completion_ids, batch.completion_ids) and again.completions == batch.completions
    assert torch.equal(again.truncated, batch.truncated.cpu())
    torch.testing.assert_close(completion_logps(trainer.model, again), completion_logps(trainer.model, batch))


def test_trained_groups_all_carry_signal_and_discards_are_counted(reward_dir, synth_dir, tmp_path):
    trainer = make_trainer(synth_dir, tmp_path, "--train.max_steps", "3", "--train.gradient_accumulation_steps", "2",
                           "--train.log_completions", "true")
    history = trainer.train(progress=False)
    needed, g = 2, 4
    for m in history:
        assert m["frac_reward_zero_std"] == 0.0 and m["dynamic_sampling/shortfall"] == 0.0
        assert m["prompts"] == m["dynamic_sampling/rounds"] * needed  # each draw is one step's worth of prompts
        assert m["dynamic_sampling/discarded_rollouts"] == (m["prompts"] - needed) * g
        assert m["dynamic_sampling/zero_std_groups"] <= m["prompts"] - needed
    assert sum(m["dynamic_sampling/discarded_rollouts"] for m in history) > 0  # half the samples give no signal
    assert trainer.state[CURSOR] == sum(m["prompts"] for m in history)
    logged = (tmp_path / "metrics.jsonl").read_text()
    assert '"dynamic_sampling/discarded_rollouts"' in logged and '"dynamic_sampling/rounds"' in logged
    # the log_extra column follows its completions through the filtering and the reassembly: 3 steps x 2 x G rows
    rows = [json.loads(x) for x in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * needed * g and all(r["reported_qid"] == r["qid"] for r in rows)
    assert all(int(r["qid"][-1]) % 2 == 1 for r in rows)  # only the samples with signal were trained on


def test_without_zero_variance_groups_it_is_the_plain_run(reward_dir, synth_dir, tmp_path):
    """The first draw of a step is the plain step's prompts with the plain step's seeds, and the micro-batches
    assembled again are the plain ones: when every group has signal, the runs are identical."""
    args = ["--train.max_steps", "2", "--train.reward_funcs", "dyn_rewards:alternating", "--train.beta", "0.04",
            "--train.per_device_train_batch_size", "2"]
    dyn = make_trainer(synth_dir, tmp_path / "dyn", *args)
    plain = make_trainer(synth_dir, tmp_path / "plain", *args, "--train.dynamic_sampling", "false")
    groups, _ = dyn.sampler._draw(0, 0, 0)
    assert [g.sample for g in groups] == [i for p in plain.step_positions(0) for i in p]
    for a, b in zip(dyn.train(progress=False), plain.train(progress=False), strict=True):
        assert a["dynamic_sampling/rounds"] == 1 and a["dynamic_sampling/discarded_rollouts"] == 0
        assert (a["loss"], a["reward"], a["kl"]) == (b["loss"], b["reward"], b["kl"])
    expected = params_of(plain)
    for name, value in params_of(dyn).items():
        assert torch.equal(value, expected[name]), name


def test_a_shortfall_trains_on_and_is_logged(reward_dir, synth_dir, tmp_path, caplog):
    trainer = make_trainer(synth_dir, tmp_path, "--train.max_steps", "1", "--train.reward_funcs", "dyn_rewards:constant",
                           "--train.max_resample", "2", "--train.beta", "0.04")
    with caplog.at_level(logging.WARNING, logger="timegrpo.trainer.dynamic"):
        m = trainer.train_step()
    assert (m["dynamic_sampling/rounds"], m["dynamic_sampling/shortfall"], m["frac_reward_zero_std"]) == (3, 1, 1.0)
    assert m["dynamic_sampling/discarded_rollouts"] == 2 * 4 and m["dynamic_sampling/zero_std_groups"] == 3
    assert "found 0 of 1 groups with non-zero reward variance in 3 draws" in caplog.text
    assert m["loss"] == 0.0  # advantage 0 everywhere, and the policy is still the reference


def test_resume_reaches_the_same_parameters_and_cursor(reward_dir, synth_dir, tmp_path):
    full = make_trainer(synth_dir, tmp_path / "full", "--train.max_steps", "3")
    full.train(progress=False)
    target, cursor = params_of(full), full.state[CURSOR]
    assert cursor > 3  # some steps drew again

    first = make_trainer(synth_dir, tmp_path / "cut", "--train.max_steps", "3")
    first.train_step()
    first.train_step()
    ckpt = first.save_checkpoint()
    del first
    resumed = make_trainer(synth_dir, tmp_path / "cut", "--train.max_steps", "3", seed=123)
    resumed.load_checkpoint(ckpt)
    assert resumed.state["step"] == 2 and resumed.state[CURSOR] == sum(m["prompts"] for m in full.history[:2])
    resumed.train(progress=False)
    assert resumed.state[CURSOR] == cursor
    for name, value in target.items():
        torch.testing.assert_close(params_of(resumed)[name], value, rtol=0, atol=0, msg=name)


def test_two_processes_equal_one_process_with_twice_the_accumulation(reward_dir, two_layouts, monkeypatch):
    import os

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(reward_dir), os.environ.get("PYTHONPATH", "")]))
    one, r0 = two_layouts("grpo", *FAST, "--train.max_steps", "3", "--train.beta", "0.04", "--train.loss_type", "dapo",
                          port=free_port())
    assert sum(m["dynamic_sampling/discarded_rollouts"] for m in one["history"]) > 0
    for a, b in zip(one["history"], r0["history"], strict=True):
        for key in ("dynamic_sampling/rounds", "dynamic_sampling/discarded_rollouts", "prompts"):
            assert a[key] == b[key], key
        assert a["frac_reward_zero_std"] == b["frac_reward_zero_std"] == 0.0
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
