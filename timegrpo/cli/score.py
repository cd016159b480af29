"""``timegrpo score``: metrics of a predictions jsonl against an annotation file of any supported format.

The options are the fields of :class:`timegrpo.evaluate.config.ScoreConfig` (``--config FILE`` and ``--key value``
flags); the metrics are :func:`timegrpo.evaluate.score.score_file`'s (see :mod:`timegrpo.evaluate.score`).
"""

from __future__ import annotations

import argparse
import json
import sys

from timegrpo.config.core import add_command, from_args
from timegrpo.evaluate.config import ScoreConfig


def run(args: argparse.Namespace) -> int:
    from timegrpo.evaluate.score import score_file

    cfg = from_args(ScoreConfig, args)
    if cfg is None:
        return 0
    result, table = score_file(cfg)
    sys.stdout.write((json.dumps(result.flat(), indent=2) if cfg.json else table) + "\n")
    notes = result.notes()
    if notes:
        sys.stderr.write("timegrpo score: " + "; ".join(notes) + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from timegrpo.evaluate.benchmarks import BENCHMARKS

    benchmarks = "\n".join(f"  {name}: {BENCHMARKS.get(name).notes}" for name in BENCHMARKS.names())
    add_command(
        subparsers, "score", ScoreConfig, run, help="metrics of a predictions jsonl against annotations",
        description="Metrics of a predictions jsonl against an annotation file of any supported format: R1@m and "
        f"mIoU, and each benchmark's own (--benchmark, default auto: from the annotations):\n{benchmarks}")
