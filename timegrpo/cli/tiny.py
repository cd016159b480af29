"""``timegrpo tiny``: build a tiny offline Qwen-VL model folder (for tests, benchmarks, the demo)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from timegrpo.config import core

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


@dataclass
class TinyOptions:
    """What ``timegrpo tiny`` builds."""

    out: str = core.opt("", "output folder (required)")
    family: str = core.opt("qwen2_5_vl", f"model family: {', '.join(FAMILIES)}")
    seed: int = core.opt(0, "seed of the random weights")

    def __post_init__(self) -> None:
        core.check(bool(self.out), "out", "is required: --out DIR")
        core.check_choice("family", self.family, FAMILIES)


def register(subparsers: argparse._SubParsersAction) -> None:
    core.add_command(
        subparsers, "tiny", TinyOptions, run,
        help="build a tiny random-weight Qwen2-VL / Qwen2.5-VL / Qwen3-VL model folder offline",
        description="Build a tiny model of the real architecture with a freshly trained BPE tokenizer and the "
        "real processor classes, and save it where from_pretrained loads it back.",
    )


def run(args: argparse.Namespace) -> int:
    from timegrpo.models.tiny import save_tiny_vlm

    opts = core.from_args(TinyOptions, args)
    if opts is None:
        return 0
    path = save_tiny_vlm(opts.family, opts.out, seed=opts.seed)
    print(f"saved a tiny {opts.family} model to {path}")
    return 0
