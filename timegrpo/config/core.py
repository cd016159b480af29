"""One config mechanism for every command: a dataclass tree, loaded from YAML, with command-line overrides.

A *tree* is a dataclass whose fields are either *sections* (fields whose type is itself a dataclass: ``train``,
``data``...) or *top-level* values (``method``, ``model``...). Every field has a type, a default and a help string
(:func:`opt`, :func:`section`); validation lives in each dataclass's ``__post_init__`` and raises
:class:`ConfigError` naming the field. The same rules hold for ``timegrpo train``/``sft`` (:class:`RecipeConfig`),
``eval``, ``score``, ``bench``, ``demo`` and ``detr``:

- a YAML file (``--config FILE``) gives values; missing fields keep their defaults;
- overrides are ``--section.key value`` (or ``--section.key=value``); a bare ``--key value`` works when ``key`` is
  in one place only (``--beta 0``), or when the command names a ``prefer_section`` for keys shared by several
  sections; ``-`` and ``_`` are interchangeable (``--arch-layers 2``); a bool given with no value is set true;
- values are parsed to the field's type, from YAML or from a string: bool (true/false/yes/no/1/0), int (also a
  product such as ``3584*28*28``), float (``1e-6`` too, which YAML itself reads as a string), str, lists
  (``tiou,format`` or ``[tiou, format]``) and ``none``/``null`` for optional fields;
- an unknown or ambiguous key is an error listing close matches.

>>> from timegrpo.config.recipe import RecipeConfig
>>> cfg = load(RecipeConfig, None, ["--beta", "0.04", "--train.reward_funcs", "iou,format", "--data.fps=1"])
>>> cfg.train.beta, cfg.train.reward_funcs, cfg.data.fps
(0.04, ['iou', 'format'], 1.0)
>>> load(RecipeConfig, None, ["--data.fsp", "1"])
Traceback (most recent call last):
...
timegrpo.config.core.ConfigError: unknown option --data.fsp; did you mean --data.fps, ...?
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import yaml

from timegrpo.errors import UserError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}
_PRODUCT = re.compile(r"^\s*\d+(\s*\*\s*\d+)*\s*$")


class ConfigError(UserError, ValueError):
    """An invalid configuration value; the message names the field and what to do."""


# ------------------------------------------------------------------------------------------------ declaring
def opt(default: Any, help: str) -> Any:
    """A dataclass field with a default and a help string (a list default is copied per instance)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda d=default: list(d), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def opt_factory(factory: Any, help: str) -> Any:
    """A dataclass field built by ``factory`` (a list, a dict...) with a help string."""
    return dataclasses.field(default_factory=factory, metadata={"help": help})


def section(cls: type, help: str) -> Any:
    """A section field: a nested dataclass with its own fields, given in YAML as a mapping."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def check(ok: bool, where: str, message: str) -> None:
    """Raise ``ConfigError("where: message")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{where}: {message}")


def check_choice(where: str, value: Any, choices: Any) -> None:
    check(value in choices, where, f"{value!r} is not one of {', '.join(map(str, choices))}")


def check_registered(where: str, value: str, module: str, registry: str) -> None:
    """Check ``value`` against the registry ``registry`` of ``module`` (imported only here, when a config is
    validated: the registries of later stages need torch, the config mechanism does not)."""
    import importlib

    check_choice(where, value, getattr(importlib.import_module(module), registry).names())


# ------------------------------------------------------------------------------------------------ the shape
def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


@functools.cache
def sections_of(root: type) -> dict[str, type]:
    """The section fields of a tree, in declaration order: ``{'model': ModelConfig, ...}``."""
    return {name: tp for name, tp in field_types(root).items() if dataclasses.is_dataclass(tp)}


@functools.cache
def top_level_of(root: type) -> tuple[str, ...]:
    return tuple(name for name in field_types(root) if name not in sections_of(root))


@functools.cache
def options_of(root: type) -> dict[str, tuple[str, ...]]:
    """Bare key -> qualified names (``beta`` -> ``('train.beta',)``), top-level keys included."""
    options: dict[str, list[str]] = {key: [key] for key in top_level_of(root)}
    for name, cls in sections_of(root).items():
        for f in dataclasses.fields(cls):
            options.setdefault(f.name, []).append(f"{name}.{f.name}")
    return {k: tuple(v) for k, v in options.items()}


def field_type(root: type, qualified: str) -> Any:
    if "." not in qualified:
        return field_types(root)[qualified]
    name, key = qualified.split(".", 1)
    return field_types(sections_of(root)[name])[key]


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


# ------------------------------------------------------------------------------------------------ values
def coerce_value(value: Any, tp: Any, where: str) -> Any:
    """Parse ``value`` (from YAML or a command-line string) to the type ``tp``; ``where`` names it in errors."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(arms) < len(typing.get_args(tp))
        if optional and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        errors = []
        for arm in arms:
            try:
                return coerce_value(value, arm, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {type_name(tp)}, got {value!r}")
    if origin is tuple and typing.get_args(tp)[1:] == (Ellipsis,):  # tuple[X, ...]: a list, stored as a tuple
        return tuple(coerce_value(list(value) if isinstance(value, tuple) else value, list[typing.get_args(tp)[0]],
                                  where))
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip()
            text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {type_name(item)}, got {value!r}")
        return [coerce_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, tp, where)


def _coerce_scalar(value: Any, tp: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _PRODUCT.match(value):
            return functools.reduce(lambda a, b: a * b, (int(f) for f in value.split("*")), 1)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r} (quote it in YAML)")
    if tp is Any:
        return value
    raise ConfigError(f"{where}: unsupported field type {type_name(tp)}")


# ------------------------------------------------------------------------------------------------ keys
def _did_you_mean(root: type, key: str, prefix: str = "--") -> str:
    options = options_of(root)
    names = sorted(set(options) | {q for qs in options.values() for q in qs})
    same_name = list(options.get(key.rsplit(".", 1)[-1], ()))  # right key, wrong section
    close = same_name + [c for c in difflib.get_close_matches(key, names, n=4, cutoff=0.6) if c not in same_name]
    if not close:
        where = f"sections are {', '.join(sections_of(root))}" if sections_of(root) else "see --help"
        return f"; {where}"
    return "; did you mean " + ", ".join(f"{prefix}{c}" for c in close) + "?"


def resolve_key(root: type, key: str, prefer_section: str | None = None) -> str:
    """``beta`` -> ``train.beta``; ``train.beta`` -> itself; errors for unknown or ambiguous keys."""
    key = key.replace("-", "_")
    options = options_of(root)
    qualified = {q for qs in options.values() for q in qs}
    if key in qualified:
        return key
    found = options.get(key) if "." not in key else None
    if not found:
        raise ConfigError(f"unknown option --{key}{_did_you_mean(root, key)}")
    if len(found) == 1:
        return found[0]
    preferred = f"{prefer_section}.{key}"
    if preferred in found:
        return preferred
    raise ConfigError(f"option --{key} is ambiguous: say which with {' or '.join('--' + q for q in found)}")


def parse_overrides(root: type, tokens: Sequence[str], prefer_section: str | None = None
                    ) -> list[tuple[str, str | None]]:
    """``['--beta', '0', '--use_lora']`` -> ``[('train.beta', '0'), ('model.use_lora', None)]``."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"expected an option like --section.key VALUE, got {token!r}")
        key, value = token[2:], None
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value, i = tokens[i + 1], i + 2
        else:
            i += 1
        out.append((resolve_key(root, key, prefer_section), value))
    return out


# ------------------------------------------------------------------------------------------------ building
def flatten(root: type, raw: Any, source: str) -> dict[str, Any]:
    """A nested mapping -> ``{'method': ..., 'train.beta': ...}`` with every value coerced; structure checked."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of field: value")
    sections, top = sections_of(root), top_level_of(root)
    values: dict[str, Any] = {}
    for key, body in raw.items():
        if key in top:
            values[key] = coerce_value(body, field_type(root, key), f"{source}: {key}")
            continue
        if key not in sections:
            close = difflib.get_close_matches(str(key), [*top, *sections], n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            kind = "section" if sections else "key"
            raise ConfigError(f"{source}: unknown {kind} {key!r}{hint} (known: {', '.join([*top, *sections])})")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: section {key!r} must be a mapping of field: value")
        known = {f.name for f in dataclasses.fields(sections[key])}
        for name, value in body.items():
            qualified = f"{key}.{name}"
            if name not in known:
                raise ConfigError(f"{source}: unknown key {qualified}{_did_you_mean(root, qualified, prefix='')}")
            values[qualified] = coerce_value(value, field_type(root, qualified), f"{source}: {qualified}")
    return values


def from_flat(root: type, values: dict[str, Any]) -> Any:
    """Build (and validate) a tree from already-typed ``{'train.beta': 0.04, 'method': ...}``.

    A ``ValueError`` from a dataclass's own validation becomes a :class:`ConfigError` with its message.
    """
    parts: dict[str, dict[str, Any]] = {name: {} for name in sections_of(root)}
    top: dict[str, Any] = {}
    for qualified, value in values.items():
        if "." in qualified:
            name, key = qualified.split(".", 1)
            parts[name][key] = value
        else:
            top[qualified] = value
    try:
        return root(**top, **{name: cls(**parts[name]) for name, cls in sections_of(root).items()})
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def from_dict(root: type, data: dict[str, Any] | None, source: str = "<dict>") -> Any:
    """A validated tree from a nested dict shaped like its YAML (e.g. :func:`to_dict`'s output)."""
    return from_flat(root, flatten(root, data, source))


def read_yaml(root: type, path: str | Path, what: str = "config") -> dict[str, Any]:
    """The typed flat values of a YAML file (errors name it: ``what`` is ``config``, ``recipe``...)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None
    return flatten(root, raw, f"{what} {path}")


def load(root: type, path: str | Path | None, overrides: Sequence[str] = (), *,
         prefer_section: str | None = None, defaults: dict[str, Any] | None = None, what: str = "config") -> Any:
    """Load ``path`` (``None``: all defaults), apply ``overrides`` (``['--train.beta', '0', ...]``), validate.

    ``defaults`` (flat, ``{'train.output_dir': ...}``) are applied under the file. ``prefer_section`` resolves
    bare keys present in several sections. Every error is a :class:`ConfigError` naming the file or option.
    """
    values = dict(defaults or {})
    values.update(read_yaml(root, path, what) if path is not None else {})
    for qualified, raw in parse_overrides(root, overrides, prefer_section):
        tp = field_type(root, qualified)
        if raw is None:
            if tp is not bool:
                raise ConfigError(f"option --{qualified} needs a value ({type_name(tp)})")
            raw = "true"
        values[qualified] = coerce_value(raw, tp, f"--{qualified}")
    try:
        return from_flat(root, values)
    except ConfigError as exc:
        source = f"{what} {path}" if path is not None else "defaults"
        given = f" with overrides {' '.join(overrides)}" if overrides else ""
        raise ConfigError(f"{exc} (in {source}{given})") from None


# ------------------------------------------------------------------------------------------------ writing
def to_dict(cfg: Any) -> dict[str, Any]:
    """The nested dict of a tree (top-level values first, then the sections), plain YAML/JSON types only."""
    root = type(cfg)
    out = {name: getattr(cfg, name) for name in top_level_of(root)}
    out.update({name: dataclasses.asdict(getattr(cfg, name)) for name in sections_of(root)})
    return out


def to_yaml(cfg: Any, header: str | None = None) -> str:
    """The tree as YAML that :func:`load` reads back to an equal config (``header`` becomes # comments)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return text


def save_config(cfg: Any, path: str | Path, header: str | None = None) -> Path:
    """Write :func:`to_yaml` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg, header), encoding="utf-8")
    return path


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def format_help(root: type) -> str:
    """Every option as ``--key (type, default): help``, top-level first, then by section."""
    types_ = field_types(root)
    lines = [f"--{f.name} ({type_name(types_[f.name])}, default {_default(f)!r}): {f.metadata.get('help', '')}"
             for f in dataclasses.fields(root) if f.name in top_level_of(root)]
    for name, cls in sections_of(root).items():
        lines.append(f"\n[{name}]")
        section_types = field_types(cls)
        for f in dataclasses.fields(cls):
            lines.append(f"--{name}.{f.name} ({type_name(section_types[f.name])}, default {_default(f)!r}): "
                         f"{f.metadata.get('help', '')}")
    return "\n".join(lines).strip("\n")


# ------------------------------------------------------------------------------------------------ commands
def add_command(subparsers: Any, name: str, root: type, handler: Any, *, help: str, description: str | None = None,
                config_required: bool = False) -> argparse.ArgumentParser:
    """A sub-command whose options are the fields of ``root``: ``--config FILE``, ``--print-config`` and any
    ``--key value`` override (listed in ``--help``). ``handler(args)`` reads the tree with :func:`from_args`."""
    parser = subparsers.add_parser(
        name, help=help, description=description or help, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="options (also as YAML keys in --config; bare names work when unambiguous):\n"
               + format_help(root).replace("%", "%%"))
    parser.add_argument("--config", required=config_required, default=None, help="YAML file of option values")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    parser.set_defaults(func=handler, accepts_overrides=True, config_root=root)
    return parser


def given_keys(root: type, args: argparse.Namespace, *, prefer_section: str | None = None) -> set[str]:
    """The qualified keys a command's ``--config`` file or command line set (not left at their defaults)."""
    path = getattr(args, "config", None)
    keys = set(read_yaml(root, path)) if path else set()
    overrides = list(getattr(args, "overrides", ()) or ())
    return keys | {key for key, _ in parse_overrides(root, overrides, prefer_section)}


def from_args(root: type, args: argparse.Namespace, *, prefer_section: str | None = None,
              defaults: dict[str, Any] | None = None) -> Any:
    """The tree of a command's ``--config`` and overrides; None (after printing it) with ``--print-config``."""
    cfg = load(root, getattr(args, "config", None), list(getattr(args, "overrides", ()) or ()),
               prefer_section=prefer_section, defaults=defaults)
    if getattr(args, "print_config", False):
        print(to_yaml(cfg), end="")
        return None
    return cfg
