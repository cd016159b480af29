"""``timegrpo eval``: batch inference + metrics + plots for a model over an annotation file.

The options are the fields of :class:`timegrpo.evaluate.config.EvalConfig`; the run is
:func:`timegrpo.evaluate.run.run_eval` (resumable, data parallel under ``accelerate launch``).
"""

from __future__ import annotations

import argparse

from timegrpo.cli._dataclass_args import add_fields, from_namespace
from timegrpo.evaluate.config import EvalConfig


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The :class:`EvalConfig` of the parsed command line."""
    return from_namespace(EvalConfig, args)


def run(args: argparse.Namespace) -> int:
    from timegrpo.data.anomalies import AnnotationError
    from timegrpo.data.video import VideoError
    from timegrpo.evaluate.config import EvalError
    from timegrpo.evaluate.run import run_eval, say

    try:
        run_eval(config_from_args(args))
    except (EvalError, AnnotationError, VideoError, FileNotFoundError, ValueError) as err:
        say(f"error: {err}")
        return 2
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="batch inference + metrics + plots for a model over an annotation file",
        description="Predict every sample of an annotation file with a Qwen-VL model (resumable, data parallel "
        "under accelerate launch), then write metrics.json, metrics.md and plots. See eval/README.md for the "
        "benchmark scripts.")
    add_fields(p, EvalConfig)
    p.set_defaults(func=run)
