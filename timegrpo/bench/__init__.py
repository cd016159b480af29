"""``timegrpo bench``: what one GRPO step costs, phase by phase, and the same work through TRL's GRPOTrainer.

    timegrpo bench [--model PATH | --tiny FAMILY | --arch qwen2_5_vl_3b|qwen2_5_vl_7b] [--frames N] [--size PX]
                   [--num-generations G] [--prompts P] [--completion-len L] [--steps S] [--warmup W]
                   [--share-prompt-prefix true|false] [--compare-prefix-off] [--vs-trl] [--sequential]
                   [--json] [--json-out FILE] [--markdown FILE] [--real-videos DIR]
    timegrpo bench --suite cpu --vs-trl --markdown BENCHMARKS.md     # what `make bench` runs
    timegrpo bench --method opd [--teacher DIR] [workload options]   # Video-OPD's step next to GRPO's (bench/opd.py)

A run trains real optimiser steps of :class:`timegrpo.trainer.grpo.GRPOTrainer` on synthetic videos of fixed
length (every prompt has ``frames/2 * (size/28)^2`` visual tokens) with a fixed completion length, and reports
per step: wall time split into data, generation, reward, log-prob forwards and backward/optimizer
(:mod:`timegrpo.bench.sides`), tokens per second (prompt + completion tokens of all completions), vision-tower
calls, the tokens the language model computes in each phase, peak memory (RSS on CPU, allocated memory on a
GPU), model FLOPs and, where the GPU's peak is known, model FLOPs utilisation; plus the data pipeline (cold decode vs cached frames per video, share of the step
spent on data) and the machine. ``--vs-trl`` runs TRL's GRPOTrainer on the same work in the same process,
alternating steps with timegrpo (:mod:`timegrpo.bench.trl_side` says how the work is matched), and reports
the timegrpo/TRL ratios; ``--compare-prefix-off`` also runs timegrpo with ``train.share_prompt_prefix`` off beside
it (each prompt then computed once per completion) and reports the step split, the language-model tokens and the
peak memory of both. Timings are medians over ``--steps`` steps after ``--warmup`` untimed ones; the load
average is recorded with them, because a shared machine makes every figure noisy.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

logger = logging.getLogger("timegrpo.bench")

_SHRUNK_3B = {"arch": "qwen2_5_vl_3b", "arch_layers": 2, "arch_heads_divisor": 16, "arch_vocab": 1024}
#: Built-in workload lists: name -> (description, [BenchConfig keyword arguments]).
SUITES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "cpu": (
        "CPU suite: the demo's tiny model on the demo's 56x56 videos; then a Qwen2.5-VL-3B-shaped model shrunk to "
        "run on CPU (2 text layers, heads / 16 at the real head size, so the vision tower keeps about its real share "
        "of the FLOPs per visual token) on 112x112 videos, with G 4 and with Time-R1's G 8; timegrpo runs with the "
        "prompt prefix shared (the default) and, step for step beside it, not shared",
        [
            {"label": "tiny-demo", "tiny": "qwen2_5_vl", "frames": 16, "size": 56, "prompts": 2,
             "num_generations": 4, "completion_len": 32, "steps": 10, "warmup": 2, "target_ratio": 0.55,
             "compare_prefix_off": True},
            {"label": "3b-shaped", **_SHRUNK_3B, "frames": 16, "size": 112, "prompts": 2, "num_generations": 4,
             "completion_len": 32, "steps": 10, "warmup": 2, "compare_prefix_off": True},
            {"label": "3b-shaped-g8", **_SHRUNK_3B, "frames": 32, "size": 112, "prompts": 2, "num_generations": 8,
             "completion_len": 48, "steps": 6, "warmup": 1, "target_ratio": 0.25, "compare_prefix_off": True},
        ],
    ),
}


def workloads(suite: str | None, base: Any, given: set[str]) -> list[Any]:
    """The workloads to run: ``suite``'s, each with the fields named in ``given`` taken from ``base`` (a
    :class:`timegrpo.bench.workload.BenchConfig`), or ``base`` alone without a suite."""
    from timegrpo.bench.workload import BenchConfig

    if not suite:
        return [base]
    override = {name: getattr(base, name) for name in given}
    return [replace(BenchConfig(**preset), **override) for preset in SUITES[suite][1]]


def run_workloads(configs: Sequence[Any], *, threads: int = 1, workdir: str | None = None,
                  peak_tflops: float | None = None, real_videos: str | None = None) -> list[dict[str, Any]]:
    """Run each workload (:func:`timegrpo.bench.runner.run_workload`) with ``threads`` torch threads (0 = torch's
    own choice), printing each summary to stderr; the real-video figures are measured with the first one."""
    import torch

    from timegrpo.bench.report import print_summary
    from timegrpo.bench.runner import run_workload

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    results = []
    try:
        for i, cfg in enumerate(configs):
            logger.info("workload %s: %s", cfg.label or cfg.model_name(), cfg.to_dict())
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON (TRL/transformers print)
                results.append(run_workload(cfg, workdir=workdir, peak=peak_tflops,
                                            real_videos_dir=real_videos if i == 0 else None))
            print_summary(results[-1], file=sys.stderr)
    finally:
        torch.set_num_threads(previous)
    return results
