"""``timegrpo tiny``: build a tiny offline Qwen-VL model folder (for tests, benchmarks, the demo)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tiny",
        help="build a tiny random-weight Qwen2-VL / Qwen2.5-VL / Qwen3-VL model folder offline",
        description="Build a tiny model of the real architecture with a freshly trained BPE tokenizer and the "
        "real processor classes, and save it where from_pretrained loads it back.",
    )
    p.add_argument("--family", default="qwen2_5_vl", choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from timegrpo.models.tiny import save_tiny_vlm

    path = save_tiny_vlm(args.family, args.out, seed=args.seed)
    print(f"saved a tiny {args.family} model to {path}")
    return 0
