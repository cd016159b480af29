"""Run a few SFT steps of the tiny recipe and save what the invariance test compares.

Usage: python dist_sft.py DATA_DIR OUT_DIR GRAD_ACCUM [override ...]   (also under torchrun)
Writes OUT_DIR/rank{r}.pt with the final trainable parameters and the per-step metrics.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from timegrpo.config import load_config
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.trainer.sft import SFTTrainer

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"


def main() -> None:
    data, out, accum, *extra = sys.argv[1:]
    torch.set_num_threads(1)
    cfg = load_config(RECIPE, ["--sft.gradient_accumulation_steps", accum, "--sft.output_dir", out,
                               "--sft.lr_scheduler_type", "linear", "--sft.warmup_ratio", "0.4",
                               "--sft.learning_rate", "1e-3", "--sft.save_steps", "0", *extra])
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    model = prepare_policy(model)
    trainer = SFTTrainer(cfg, model, processor, load_split(data, "train"), video_source(recommended_sampling()))
    history = trainer.train(progress=False)
    params = {n: p.detach().clone() for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}
    rank = trainer.accelerator.process_index
    torch.save({"params": params, "history": history, "world": trainer.accelerator.num_processes},
               Path(out) / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
