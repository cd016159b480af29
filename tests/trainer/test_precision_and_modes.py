"""The policy trains in train mode (so gradient checkpointing checkpoints), and AdamW never updates bf16
weights without an fp32 master copy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from timegrpo.config import load_recipe
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.rewards.base import REWARDS, register_reward
from timegrpo.trainer.grpo import GRPOTrainer

if "test_length" not in REWARDS:

    @register_reward("test_length")
    def _length_reward(completions, **columns):
        return [len(c[0]["content"]) / 50.0 for c in completions]  # TRL's conversational form

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"
FAST = ["--train.reward_funcs", "test_length,format", "--train.num_generations", "4",
        "--train.max_completion_length", "8", "--train.per_device_train_batch_size", "2", "--train.save_steps", "0",
        "--train.max_steps", "1"]


def trainer_for(synth_dir, out, model, *overrides):
    cfg = load_recipe(RECIPE, [*FAST, "--train.output_dir", str(out), *overrides])
    _, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    return GRPOTrainer(cfg, model, processor, load_split(synth_dir, "train"), video_source(recommended_sampling()))


def step_counting_recompute(synth_dir, out, checkpointing):
    """One GRPO step; returns the trained parameters, how often the first decoder layer's MLP ran during
    backward (a checkpointed layer runs its forward again there), and the policy's mode after the step."""
    model, _ = build_tiny_vlm("qwen2_5_vl", seed=0)
    model = prepare_policy(model, gradient_checkpointing=checkpointing)
    model.eval()  # as from_pretrained returns it
    trainer = trainer_for(synth_dir, out, model)
    in_backward, calls = [False], [0]
    mlp = model.model.language_model.layers[0].mlp
    forward = mlp.forward  # wrapped, not hooked: forward hooks do not fire when a checkpoint recomputes

    def counting_forward(*args, **kwargs):
        calls[0] += in_backward[0]
        return forward(*args, **kwargs)

    mlp.forward = counting_forward
    backward = trainer.accelerator.backward

    def counting_backward(loss, **kwargs):
        in_backward[0] = True
        try:
            return backward(loss, **kwargs)
        finally:
            in_backward[0] = False

    trainer.accelerator.backward = counting_backward
    trainer.train_step()
    params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return params, calls[0], model.training


def test_gradient_checkpointing_recomputes_in_backward_and_changes_no_number(synth_dir, tmp_path):
    """The train forwards run in train mode: transformers only checkpoints a layer when ``self.training``, so
    with a policy left in eval mode (``from_pretrained``'s) checkpointing silently did nothing. The mode is
    restored after the step (rollouts sample in the mode they found), and the step is the same either way."""
    plain, plain_calls, plain_mode = step_counting_recompute(synth_dir, tmp_path / "plain", False)
    ckpt, ckpt_calls, ckpt_mode = step_counting_recompute(synth_dir, tmp_path / "ckpt", True)
    assert plain_calls == 0
    assert ckpt_calls == 1  # one micro-batch: layer 0's MLP ran once more, inside backward
    assert plain_mode is ckpt_mode is False
    for name, value in plain.items():
        torch.testing.assert_close(ckpt[name], value, rtol=0, atol=1e-7, msg=name)


def test_bf16_weights_with_adamw_are_refused_with_the_fix(synth_dir, tmp_path):
    """Pure-bf16 trainable weights (no fp32 master copy) would lose small AdamW updates: refused, and the
    message says what to change. bf16 frozen weights under fp32 LoRA adapters are fine."""
    model, _ = build_tiny_vlm("qwen2_5_vl", seed=0)
    model = prepare_policy(model.to(torch.bfloat16))
    with pytest.raises(ValueError, match=r"torch_dtype: float32, train\.bf16: true.*launch/zero3\.yaml.*"
                                          r"low_precision_updates: true"):
        trainer_for(synth_dir, tmp_path, model)
    opted_in = trainer_for(synth_dir, tmp_path / "opt-in", model, "--train.low_precision_updates", "true")
    assert {p.dtype for p in opted_in.model.parameters() if p.requires_grad} == {torch.bfloat16}
    lora, _ = build_tiny_vlm("qwen2_5_vl", seed=0)
    lora = prepare_policy(lora.to(torch.bfloat16), use_lora=True, train_merger=False,
                          lora_kwargs={"r": 4, "alpha": 8, "dropout": 0.0})
    trainer = trainer_for(synth_dir, tmp_path / "lora", lora, "--model.use_lora", "true")
    assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}
