"""``timegrpo demo``: the main job end to end on CPU on the embedded synthetic benchmark (see :mod:`timegrpo.demo`)."""

from __future__ import annotations

import argparse

from timegrpo.config import core
from timegrpo.demo import DemoConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    from timegrpo import demo

    core.add_command(subparsers, "demo", DemoConfig, run, help="the main job end to end on CPU on the synthetic benchmark",
                     description=demo.__doc__)


def run(args: argparse.Namespace) -> int:
    from timegrpo.demo import run_demo

    cfg = core.from_args(DemoConfig, args)
    if cfg is not None:
        run_demo(cfg)
    return 0
