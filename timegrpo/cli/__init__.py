"""The ``timegrpo`` command line: ``timegrpo <command> [...]``.

Each command lives in its own module of this package, which exposes ``register(subparsers)``: it adds its
parser(s) (cheaply: heavy imports such as torch happen inside the handler), usually with
:func:`timegrpo.config.core.add_command`, whose options are the fields of a config dataclass (``--config FILE``,
``--section.key value``, ``--print-config``); a handler takes the parsed ``argparse.Namespace`` (the options it
did not declare are in ``args.overrides``) and returns an exit code. Bad input (a :class:`timegrpo.errors.UserError`:
a config value, an annotation record, a video, a prediction file, a reward...; or a path that does not exist or
cannot be read) becomes one line on stderr and exit code 2; ``timegrpo --debug COMMAND`` (or ``TIMEGRPO_DEBUG=1``)
shows the traceback instead. Add a command by adding its module to ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from timegrpo import __version__
from timegrpo.errors import UserError

#: What counts as bad input at the command line: our own errors, and a path the user gave that is not there.
INPUT_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                                                PermissionError)


def debug_enabled() -> bool:
    """True under ``timegrpo --debug`` or ``TIMEGRPO_DEBUG=1``: input errors keep their traceback."""
    return os.environ.get("TIMEGRPO_DEBUG", "").lower() in ("1", "true", "yes")


def report_input_error(command: str, err: BaseException) -> int:
    """Print ``err`` as one line naming the command; the exit code of bad input (2)."""
    print(f"timegrpo {command}: error: {err}", file=sys.stderr)
    return 2


def guard(command: str, handler: Callable[[argparse.Namespace], Any],
          also: tuple[type[BaseException], ...] = ()) -> Callable[[argparse.Namespace], int]:
    """``handler`` with :data:`INPUT_ERRORS` (and ``also``) reported as one line and exit code 2, unless
    debugging (``args.debug`` or :func:`debug_enabled`)."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args) or 0)
        except INPUT_ERRORS + also as err:
            if getattr(args, "debug", False) or debug_enabled():
                raise
            return report_input_error(command, err)

    return run

#: Modules that contribute sub-commands, in the order ``timegrpo --help`` lists them.
COMMAND_MODULES: list[str] = [
    "timegrpo.cli.tiny",
    "timegrpo.cli.data",
    "timegrpo.cli.score",
    "timegrpo.cli.eval",
    "timegrpo.cli.curriculum",
    "timegrpo.cli.train",
    "timegrpo.cli.push",
    "timegrpo.cli.report",
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
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an input error "
                        "(also TIMEGRPO_DEBUG=1)")
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
    return guard(args.command, args.func)(args)


if __name__ == "__main__":
    sys.exit(main())
