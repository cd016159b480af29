"""Prefetching the next micro-batches' inputs (``data.num_workers``): the same inputs, the same training, the
frame cache still used; and the thread pool underneath."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from timegrpo.config import load_recipe
from timegrpo.data.source import Prefetcher, video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.rewards.base import REWARDS, register_reward
from timegrpo.trainer.grpo import GRPOTrainer
from timegrpo.trainer.sft import SFTTrainer

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"
FAST = ["--train.reward_funcs", "test_prefetch_length,format", "--train.num_generations", "2",
        "--train.max_completion_length", "6", "--train.per_device_train_batch_size", "2",
        "--train.gradient_accumulation_steps", "2", "--train.save_steps", "0", "--train.max_steps", "3",
        "--sft.per_device_train_batch_size", "3", "--sft.gradient_accumulation_steps", "2", "--sft.max_steps", "3"]

if "test_prefetch_length" not in REWARDS:

    @register_reward("test_prefetch_length")
    def _length_reward(completions, **columns):
        return [len(c[0]["content"]) / 50.0 for c in completions]  # TRL's conversational form


def make(kind, synth_dir, out, workers, *overrides, cache=None):
    cfg = load_recipe(RECIPE, [*FAST, "--train.output_dir", str(out), "--sft.output_dir", str(out),
                               "--data.num_workers", str(workers), *overrides])
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    videos = video_source(recommended_sampling(), cache_dir=cache)
    cls = GRPOTrainer if kind == "grpo" else SFTTrainer
    return cls(cfg, prepare_policy(model), processor, load_split(synth_dir, "train"), videos)


def params_of(trainer):
    return {n: p.detach().clone() for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}


def test_prefetcher_hands_out_fn_results_in_any_order_and_raises_worker_errors():
    made = []

    def fn(x):
        if x < 0:
            raise ValueError(f"bad item {x}")
        return x * 10

    def worker_fn():  # once per worker thread
        made.append(threading.current_thread().name)
        return fn

    pf = Prefetcher(fn, num_workers=2, worker_fn=worker_fn)
    for key in range(5):
        pf.submit(key, key)
    pf.submit(9, -1)
    assert pf.pending() == [0, 1, 2, 3, 4, 9]
    assert [pf.get(k, k) for k in (3, 0, 7)] == [30, 0, 70]  # 7 was never submitted: computed here
    with pytest.raises(ValueError, match="bad item -1"):
        pf.get(9, -1)
    pf.drop(4)
    assert pf.pending() == [1, 2]
    assert pf.get(1, 1) == 10 and pf.get(2, 2) == 20
    assert made and all(name.startswith("timegrpo-prefetch") for name in made)  # the work ran in the pool
    pf.close()
    inline = Prefetcher(fn, num_workers=0)
    inline.submit(1, 1)
    assert inline.pending() == [] and inline.get(1, 1) == 10


@pytest.mark.parametrize("kind", ["grpo", "sft"])
def test_prefetched_inputs_are_the_inputs_made_in_the_loop(synth_dir, tmp_path, kind):
    """Every micro-batch's inputs with 3 workers equal those made in the loop (0 workers), tensor for tensor;
    taking one starts the next ones, and the workers read the frames through the frame cache."""
    cache = tmp_path / "frames"
    serial = make(kind, synth_dir, tmp_path / "a", 0)
    ahead = make(kind, synth_dir, tmp_path / "b", 3, cache=str(cache))
    for step in range(3):
        for k in range(2):
            want_samples, want = serial.inputs.get(step, k)
            got_samples, got = ahead.inputs.get(step, k)
            assert got_samples == want_samples
            assert got.keys() == want.keys()
            for key, value in want.items():
                assert torch.equal(got[key], value) if torch.is_tensor(value) else got[key] == value, key
            m = step * 2 + k
            assert ahead.inputs._prefetcher.pending() == list(range(m + 1, min(m + 4, 6)))
    assert len(list(cache.rglob("*.npz"))) == len({s.video for s in ahead.samples})
    ahead.inputs.close()


def test_training_with_workers_equals_training_without(synth_dir, tmp_path):
    """3 GRPO steps x 2 micro-batches: the same parameters and metrics with 2 workers as with none."""
    runs = {}
    for workers in (0, 2):
        trainer = make("grpo", synth_dir, tmp_path / str(workers), workers, "--train.beta", "0.04")
        history = trainer.train(progress=False)
        runs[workers] = (params_of(trainer), history)
    (p0, h0), (p2, h2) = runs[0], runs[2]
    for name, value in p0.items():
        assert torch.equal(p2[name], value), name
    drop = {"step_time", "rollout_time"}
    assert [{k: v for k, v in h.items() if k not in drop} for h in h2] == \
        [{k: v for k, v in h.items() if k not in drop} for h in h0]
