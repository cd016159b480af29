"""``timegrpo score``: metrics of a predictions jsonl against an annotation file of any supported format.

The options are the fields of :class:`timegrpo.evaluate.config.ScoreConfig`; the metrics are
:func:`timegrpo.evaluate.score.score_file`'s (see :mod:`timegrpo.evaluate.score` for what is reported).
"""

from __future__ import annotations

import argparse
import json
import sys

from timegrpo.cli._dataclass_args import add_fields, from_namespace
from timegrpo.evaluate.config import ScoreConfig


def run(args: argparse.Namespace) -> int:
    from timegrpo.evaluate.score import score_file

    cfg = from_namespace(ScoreConfig, args)
    result, table = score_file(cfg)
    sys.stdout.write((json.dumps(result.flat(), indent=2) if cfg.json else table) + "\n")
    notes = result.notes()
    if notes:
        sys.stderr.write("timegrpo score: " + "; ".join(notes) + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from timegrpo.evaluate.benchmarks import BENCHMARKS

    benchmarks = "; ".join(f"{name}: {BENCHMARKS.get(name).notes}" for name in BENCHMARKS.names())
    p = subparsers.add_parser(
        "score", help="metrics of a predictions jsonl against annotations",
        description="Metrics of a predictions jsonl against an annotation file of any supported format (R1@m, "
        f"mIoU, and each benchmark's own). Benchmarks: {benchmarks}".replace("%", "%%"))
    add_fields(p, ScoreConfig)
    p.set_defaults(func=run)
