"""``timegrpo bench``: what one GRPO step costs, phase by phase, and the same work through TRL's GRPOTrainer.

    timegrpo bench [--model PATH | --tiny FAMILY | --arch qwen2_5_vl_3b|qwen2_5_vl_7b] [--frames N] [--size PX]
                   [--num-generations G] [--prompts P] [--completion-len L] [--steps S] [--warmup W]
                   [--vs-trl] [--json] [--json-out FILE] [--markdown FILE] [--real-videos DIR]
    timegrpo bench --suite cpu --vs-trl --markdown BENCHMARKS.md     # what `make bench` runs

A run trains real optimiser steps of :class:`timegrpo.trainer.grpo.GRPOTrainer` on synthetic videos of fixed
length (every prompt has ``frames/2 * (size/28)^2`` visual tokens) with a fixed completion length, and reports
per step: wall time split into data, generation, reward, log-prob forwards and backward/optimizer
(:mod:`timegrpo.bench.sides`), tokens per second (prompt + completion tokens of all completions), vision-tower
calls, peak memory (RSS on CPU, allocated memory on a GPU), model FLOPs and, where the GPU's peak is known,
model FLOPs utilisation; plus the data pipeline (cold decode vs cached frames per video, share of the step
spent on data) and the machine. ``--vs-trl`` runs TRL's GRPOTrainer on the same work in the same process,
alternating steps with timegrpo (:mod:`timegrpo.bench.trl_side` says how the work is matched), and reports
the timegrpo/TRL ratios. Timings are medians over ``--steps`` steps after ``--warmup`` untimed ones; the load
average is recorded with them, because a shared machine makes every figure noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

logger = logging.getLogger("timegrpo.bench")

#: CLI option -> BenchConfig field, for the options that map one to one.
FIELD_OPTIONS = {
    "model": "--model", "tiny": "--tiny", "arch": "--arch", "arch_layers": "--arch-layers",
    "arch_heads_divisor": "--arch-heads-divisor", "arch_vocab": "--arch-vocab", "frames": "--frames",
    "size": "--size", "prompts": "--prompts", "num_generations": "--num-generations",
    "completion_len": "--completion-len", "steps": "--steps", "warmup": "--warmup", "beta": "--beta",
    "loss_type": "--loss-type", "learning_rate": "--learning-rate", "template": "--template", "dtype": "--dtype",
    "seed": "--seed", "label": "--label",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from timegrpo.bench.workload import BenchConfig

    p = subparsers.add_parser("bench", help="time GRPO steps phase by phase, optionally side by side with TRL",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    types = {f.name: f for f in fields(BenchConfig)}
    for name, option in FIELD_OPTIONS.items():
        f = types[name]
        kind = {"int": int, "float": float}.get(str(f.type).replace(" | None", ""), str)
        p.add_argument(option, dest=name, type=kind, default=None,
                       help=f"{f.metadata['help']} (default: {f.default})")
    p.add_argument("--vs-trl", action="store_true", help="also run TRL's GRPOTrainer on the same work, step for step")
    for name in ("sequential", "gradient_checkpointing"):
        p.add_argument("--" + name.replace("_", "-"), dest=name, action="store_true", help=types[name].metadata["help"])
    p.add_argument("--suite", choices=sorted(SUITES), default=None,
                   help="run a built-in list of workloads (options given above override each one's settings)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared machine more threads per process oversubscribe "
                        "the cores and step times swing several-fold; 0 = torch's own choice)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    p.add_argument("--json-out", default=None, help="also write the JSON result to this file")
    p.add_argument("--markdown", default=None, help="write a BENCHMARKS.md-style report to this file")
    p.add_argument("--real-videos", default=None,
                   help="folder of real videos for the decode-vs-cache figures (Time-R1 sampling)")
    p.add_argument("--workdir", default=None, help="where temporary models, videos and caches go (default: $TMPDIR)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak TFLOP/s for model FLOPs utilisation (default: known GPUs' bf16 peak)")
    p.set_defaults(func=run_bench)


_SHRUNK_3B = {"arch": "qwen2_5_vl_3b", "arch_layers": 2, "arch_heads_divisor": 16, "arch_vocab": 1024}
#: Built-in workload lists: name -> (description, [BenchConfig keyword arguments]).
SUITES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "cpu": (
        "CPU suite: the demo's tiny model on the demo's 56x56 videos; then a Qwen2.5-VL-3B-shaped model shrunk to "
        "run on CPU (2 text layers, heads / 16 at the real head size, so the vision tower keeps about its real share "
        "of the FLOPs per visual token) on 112x112 videos, with G 4 and with Time-R1's G 8",
        [
            {"label": "tiny-demo", "tiny": "qwen2_5_vl", "frames": 16, "size": 56, "prompts": 2,
             "num_generations": 4, "completion_len": 32, "steps": 10, "warmup": 2},
            {"label": "3b-shaped", **_SHRUNK_3B, "frames": 16, "size": 112, "prompts": 2, "num_generations": 4,
             "completion_len": 32, "steps": 10, "warmup": 2},
            {"label": "3b-shaped-g8", **_SHRUNK_3B, "frames": 32, "size": 112, "prompts": 2, "num_generations": 8,
             "completion_len": 48, "steps": 6, "warmup": 1},
        ],
    ),
}


def configs_from_args(args: argparse.Namespace) -> list[Any]:
    """The workloads to run: the suite's (each overridden by the options given) or one from the options."""
    from timegrpo.bench.workload import BenchConfig

    given = {name: getattr(args, name) for name in FIELD_OPTIONS if getattr(args, name, None) is not None}
    for flag in ("vs_trl", "sequential", "gradient_checkpointing"):
        if getattr(args, flag, False):
            given[flag] = True
    if args.suite:
        return [replace(BenchConfig(**preset), **given) for preset in SUITES[args.suite][1]]
    return [BenchConfig(**given)]


def run_bench(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    try:
        configs = configs_from_args(args)
    except (ValueError, KeyError) as err:
        print(f"timegrpo bench: {err}", file=sys.stderr)
        return 2
    import torch

    from timegrpo.bench.report import print_summary, write_markdown
    from timegrpo.bench.runner import run_workload

    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    try:
        for i, cfg in enumerate(configs):
            logger.info("workload %s: %s", cfg.label or cfg.model_name(), cfg.to_dict())
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON (TRL/transformers print)
                results.append(run_workload(cfg, workdir=args.workdir, peak=args.peak_tflops,
                                            real_videos_dir=args.real_videos if i == 0 else None))
            print_summary(results[-1], file=sys.stderr)
    finally:
        torch.set_num_threads(threads)
    out: dict[str, Any] = results[0] if len(results) == 1 else {"suite": args.suite, "workloads": results}
    text = json.dumps(out, indent=2, default=float)
    if args.json:
        print(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    if args.markdown:
        write_markdown(results, args.markdown, argv=sys.argv, suite=args.suite,
                       description=SUITES[args.suite][0] if args.suite else "")
        logger.info("wrote %s", args.markdown)
    return 0
