"""`timegrpo bench` with two run-time patches, as launch/gpu_bench.sh ran it for BENCHMARKS.md's GPU section (both
printed to the log; neither changes what a step computes):

1. The policy is put in train mode once the GRPOTrainer is built. Today nothing calls ``model.train()``
   (``from_pretrained`` returns the model in eval mode and ``rollout`` restores that mode after generation),
   so transformers' gradient checkpointing, which only acts when ``module.training``, never runs: at Time-R1
   settings the 7B would keep every layer's activations (~185 GB) and run out of memory. Qwen2.5-VL has no
   dropout (attention_dropout 0), so train mode changes nothing else.
2. The random-weight model is built on the GPU (``torch.device('cuda')`` around ``save_arch_model``):
   CPU ``normal_`` on bf16 is single-threaded (~30M values/s here), minutes for 8.3B parameters.
"""
import sys

import torch

import timegrpo.bench.arch as arch
import timegrpo.trainer as trainer_module

_init = trainer_module.GRPOTrainer.__init__


def _init_train_mode(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.model.train()
    print(f"[gpu-bench patch] policy in train mode: {self.model.training}", file=sys.stderr)


_save = arch.save_arch_model


def _save_on_gpu(*args, **kwargs):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        out = _save(*args, **kwargs)
    if device == "cuda":
        torch.cuda.empty_cache()
    print(f"[gpu-bench patch] random-weight model built on {device}", file=sys.stderr)
    return out


trainer_module.GRPOTrainer.__init__ = _init_train_mode
arch.save_arch_model = _save_on_gpu

if __name__ == "__main__":
    from timegrpo.cli import main

    sys.argv = ["timegrpo", "bench", *sys.argv[1:]]
    sys.exit(main(sys.argv[1:]))
