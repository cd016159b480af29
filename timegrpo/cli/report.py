"""``timegrpo report RUN_OR_EVAL_DIRS... --out report.html``: one HTML page over evaluations and training runs.

The options are the fields of :class:`timegrpo.report.ReportConfig` (``--config FILE`` too); they are also
declared to argparse, so that ``--out report.html`` may come before or after the folders. What the page holds:
:mod:`timegrpo.report.page`; which folders count: :mod:`timegrpo.report.sources`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from timegrpo.config import core
from timegrpo.report.page import ReportConfig


def run(args: argparse.Namespace) -> int:
    from timegrpo.report import build_report

    given = [(f.name, getattr(args, f"report_{f.name}")) for f in dataclasses.fields(ReportConfig)]
    args.overrides = [*args.overrides, *(x for name, v in given if v is not None for x in (f"--{name}", v))]
    cfg = core.from_args(ReportConfig, args)
    if cfg is None:
        return 0
    print(json.dumps(build_report(cfg, args.inputs)))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = core.add_command(
        subparsers, "report", ReportConfig, run,
        help="one HTML page: the table across benchmarks and checkpoints, plots, example timelines, training curves",
        description="One self-contained HTML page (PNGs embedded, and written beside it) over `timegrpo eval` "
        "folders and training\noutput_dirs (or folders holding them): the cross-benchmark table, per-benchmark "
        "plots, example timelines\nof real predictions and the training curves of metrics.jsonl.")
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_EVAL_DIR", help="eval folders, training output_dirs, or "
                   "folders holding them")
    for f in dataclasses.fields(ReportConfig):
        p.add_argument(f"--{f.name}", dest=f"report_{f.name}", default=None, metavar=f.name.upper(),
                       help=f.metadata.get("help"))
