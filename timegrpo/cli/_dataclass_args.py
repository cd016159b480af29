"""Interim: command-line flags from a config dataclass tree (until :mod:`timegrpo.config.core` lands on main).

Every field of the root and of its sections becomes ``--field-name`` (a bool is a switch); values are parsed to
the field's type by :func:`timegrpo.config.coerce_value`, and the tree is built (and validated) from them.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from timegrpo.config import coerce_value


def add_fields(parser: argparse.ArgumentParser, root: type) -> None:
    """One flag per field of ``root`` and of its section dataclasses (dest: ``section.field``)."""
    groups: list[tuple[str, type, Any]] = [("", root, parser)]
    hints = typing.get_type_hints(root)
    for f in dataclasses.fields(root):
        if dataclasses.is_dataclass(hints[f.name]):
            groups.append((f"{f.name}.", hints[f.name], parser.add_argument_group(f.metadata.get("help", f.name))))
    for prefix, cls, group in groups:
        types = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(types[f.name]):
                continue
            flag, help_ = "--" + f.name.replace("_", "-"), f.metadata.get("help", "")
            if types[f.name] is bool:
                group.add_argument(flag, dest=prefix + f.name, action="store_true", help=help_)
            else:
                group.add_argument(flag, dest=prefix + f.name, default=None,
                                   help=f"{help_} (default: {f.default})".replace("%", "%%"))


def from_namespace(root: type, args: argparse.Namespace) -> Any:
    """The validated ``root`` tree of the flags given in ``args`` (the others keep their defaults)."""
    given = {k: v for k, v in vars(args).items() if v is not None and v is not False}
    hints = typing.get_type_hints(root)
    top: dict[str, Any] = {}
    for f in dataclasses.fields(root):
        cls = hints[f.name]
        if dataclasses.is_dataclass(cls):
            types = typing.get_type_hints(cls)
            values = {g.name: coerce_value(given[f"{f.name}.{g.name}"], types[g.name], f"--{g.name}")
                      for g in dataclasses.fields(cls) if f"{f.name}.{g.name}" in given}
            top[f.name] = cls(**values)
        elif f.name in given:
            top[f.name] = coerce_value(given[f.name], cls, f"--{f.name}")
    return root(**top)
