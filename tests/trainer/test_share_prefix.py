"""``train.share_prompt_prefix``: two GRPO steps reach the same parameters with the switch on and off, having
sampled the same completions, while the language model computes far fewer tokens."""

from __future__ import annotations

from pathlib import Path

import torch

from timegrpo.config import load_recipe
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.rewards.base import REWARDS, register_reward
from timegrpo.trainer.grpo import GRPOTrainer

if "test_length" not in REWARDS:  # a random tiny model scores 0 on tiou/format: give GRPO a signal to follow

    @register_reward("test_length")
    def _length_reward(completions, **columns):
        return [len(c) / 50.0 for c in completions]

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"


def run_two_steps(synth_dir, out, share):
    """Two steps of 2 prompts x G 4, with a reference (beta) and two updates per rollout (old log-probs), so
    generation and every log-prob forward (old, reference, train) take the switch."""
    cfg = load_recipe(RECIPE, [
        "--train.reward_funcs", "test_length,format", "--train.num_generations", "4",
        "--train.max_completion_length", "8", "--train.per_device_train_batch_size", "2", "--train.save_steps", "0",
        "--train.beta", "0.04", "--train.num_iterations", "2", "--train.max_steps", "2",
        "--train.share_prompt_prefix", str(share).lower(), "--train.log_completions", "true",
        "--train.output_dir", str(out)])
    assert cfg.train.share_prompt_prefix is share
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    trainer = GRPOTrainer(cfg, prepare_policy(model), processor, load_split(synth_dir, "train"),
                          video_source(recommended_sampling()))
    decoder = trainer.accelerator.unwrap_model(trainer.model).model.language_model
    tokens = []
    hook = decoder.register_forward_hook(lambda m, a, kw, out: tokens.append(kw["inputs_embeds"].shape[:2].numel()),
                                         with_kwargs=True)
    completions = []
    for _ in range(2):
        trainer.train_step()
        completions += [row["completion"] for row in trainer.log_rows(0)["completions.jsonl"]]
    hook.remove()
    params = {n: p.detach().clone() for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}
    return params, completions, sum(tokens), cfg.train.learning_rate


def test_two_steps_reach_the_same_parameters_with_the_switch_on_and_off(synth_dir, tmp_path):
    """Same samples, and parameters within 5% of one learning-rate step of each other: the gradients agree to
    float rounding (~1e-6 relative, tests/models/test_prefix.py), and AdamW's first steps move every weight by
    about ``lr * sign(grad)``, so an entry whose gradient is near zero turns rounding into a fraction of a step
    (1% of lr here); a wrong gradient would be off by whole steps."""
    init = {n: p.detach().clone() for n, p in prepare_policy(build_tiny_vlm("qwen2_5_vl", seed=0)[0]).named_parameters()}
    off, samples_off, tokens_off, lr = run_two_steps(synth_dir, tmp_path / "off", False)
    on, samples_on, tokens_on, _ = run_two_steps(synth_dir, tmp_path / "on", True)
    assert samples_on == samples_off and len(samples_on) == 2 * 2 * 4
    moved = max(float((off[n] - init[n]).abs().max()) for n in off)
    assert moved > lr  # the steps did train
    for name, value in off.items():
        torch.testing.assert_close(on[name], value, rtol=0, atol=0.05 * lr, msg=name)
    # language-model tokens of the two steps (generation's prefill and decoding included): each prompt of ~180
    # tokens computed once per forward instead of 4 times
    assert tokens_on < 0.4 * tokens_off
