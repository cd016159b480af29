"""The ``timegrpo`` command line: ``timegrpo <command> [...]``.

Each command lives in its own module, which exposes ``register(subparsers)``: it adds its parser(s)
(cheaply: heavy imports such as torch happen inside the handler) and sets ``func`` on them with
``parser.set_defaults(func=handler)``; a handler takes the parsed ``argparse.Namespace`` and returns an
exit code. Add a command by adding its module to ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from timegrpo import __version__

#: Modules that contribute sub-commands, in the order ``timegrpo --help`` lists them.
COMMAND_MODULES: list[str] = [
    "timegrpo.models.cli",
    "timegrpo.data.cli",
    "timegrpo.score",
    "timegrpo.eval_cli",
    "timegrpo.cli.train",
    "timegrpo.push_cli",
    "timegrpo.detr.cli",
    "timegrpo.demo",
    "timegrpo.bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timegrpo",
        description="RL post-training of video LLMs for temporal video grounding.",
    )
    parser.add_argument("--version", action="version", version=f"timegrpo {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra  # config overrides (`--train.beta 0`) for the commands that take them
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
