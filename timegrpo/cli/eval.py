"""``timegrpo eval``: batch inference + metrics + plots for a model over an annotation file.

The options are the fields of :class:`timegrpo.evaluate.config.EvalConfig`, from ``--config FILE`` (e.g.
``eval/charades_sta.yaml``, a benchmark's protocol) and ``--key value`` flags (``--model``, ``--annotations``,
``--out``, ``--fps``, ``--max-new-tokens``...); the run is :func:`timegrpo.evaluate.run.run_eval` (resumable,
data parallel under ``accelerate launch``).
"""

from __future__ import annotations

import argparse

from timegrpo.cli import guard
from timegrpo.config.core import add_command, from_args
from timegrpo.evaluate.config import EvalConfig


def config_from_args(args: argparse.Namespace) -> EvalConfig | None:
    """The :class:`EvalConfig` of the parsed command line (None after ``--print-config`` printed it)."""
    return from_args(EvalConfig, args)


def _run(args: argparse.Namespace) -> int:
    from timegrpo.evaluate.run import run_eval

    cfg = config_from_args(args)
    if cfg is not None:
        run_eval(cfg)
    return 0


#: Bad input (a bad record, an unreadable video, a wrong value) is one line and exit code 2.
run = guard("eval", _run, also=(ValueError,))


def register(subparsers: argparse._SubParsersAction) -> None:
    add_command(
        subparsers, "eval", EvalConfig, run, help="batch inference + metrics + plots for a model over an annotation file",
        description="Predict every sample of an annotation file with a Qwen-VL model (resumable, data parallel under "
        "accelerate launch), then write metrics.json, metrics.md and plots. eval/*.yaml hold the benchmarks' "
        "protocols (--config) and eval/*.sh run them; see eval/README.md.")
