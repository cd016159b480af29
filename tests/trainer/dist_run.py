"""Run a few steps of the tiny recipe (GRPO or SFT) and save what the layout-invariance tests compare.

Usage: python dist_run.py grpo|sft DATA_DIR OUT_DIR GRAD_ACCUM [override ...]   (also under torchrun)
Writes OUT_DIR/rank{r}.pt with the final trainable parameters and the per-step metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from timegrpo.config import load_recipe
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.rewards.base import register_reward
from timegrpo.trainer.build import build_evaluator
from timegrpo.trainer.grpo import GRPOTrainer
from timegrpo.trainer.sft import SFTTrainer


@register_reward("test_length")
def _length_reward(completions, **columns):
    return [len(c[0]["content"]) / 50.0 for c in completions]  # TRL's conversational form


RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"
#: kind -> (trainer, recipe section)
KINDS = {"grpo": (GRPOTrainer, "train"), "sft": (SFTTrainer, "sft")}


def main() -> None:
    kind, data, out, accum, *extra = sys.argv[1:]
    trainer_cls, section = KINDS[kind]
    torch.set_num_threads(1)
    cfg = load_recipe(RECIPE, [f"--{section}.gradient_accumulation_steps", accum, f"--{section}.output_dir", out,
                               *extra])
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    model = prepare_policy(model)
    trainer = trainer_cls(cfg, model, processor, load_split(data, "train"), video_source(recommended_sampling()))
    trainer.evaluator = build_evaluator(cfg, getattr(cfg, section))  # None unless eval_steps is set
    history = trainer.train()
    params = {n: p.detach().clone() for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}
    rank = trainer.accelerator.process_index
    torch.save({"params": params, "history": history, "world": trainer.accelerator.num_processes},
               Path(out) / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
