"""The ``timegrpo`` command line: ``timegrpo <command> [...]``.

Each command lives in its own module of this package, which exposes ``register(subparsers)``: it adds its
parser(s) (cheaply: heavy imports such as torch happen inside the handler), usually with
:func:`timegrpo.config.core.add_command`, whose options are the fields of a config dataclass (``--config FILE``,
``--section.key value``, ``--print-config``); a handler takes the parsed ``argparse.Namespace`` (the options it
did not declare are in ``args.overrides``) and returns an exit code. A :class:`ConfigError` becomes one line on
stderr and exit code 2. Add a command by adding its module to ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from timegrpo import __version__
from timegrpo.config.core import ConfigError

#: Modules that contribute sub-commands, in the order ``timegrpo --help`` lists them.
COMMAND_MODULES: list[str] = [
    "timegrpo.cli.tiny",
    "timegrpo.cli.data",
    "timegrpo.cli.score",
    "timegrpo.cli.eval",
    "timegrpo.cli.curriculum",
    "timegrpo.cli.train",
    "timegrpo.cli.push",
    "timegrpo.cli.detr",
    "timegrpo.cli.demo",
    "timegrpo.cli.bench",
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
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:  # a bad option or config file: one line, no traceback
        print(f"timegrpo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
