"""Recipe YAML + command-line overrides -> :class:`TrainConfig`, and back to YAML.

A recipe is a YAML mapping with an optional top-level ``method`` and the sections ``model``, ``data``, ``train``
and ``sft`` (each optional; missing fields keep their defaults). Overrides are ``--section.key value`` (or
``--section.key=value``); a bare ``--key value`` works when ``key`` is in one section only (``--beta 0``), or when
the caller names a ``prefer_section`` for keys shared by ``train`` and ``sft`` (``timegrpo sft`` prefers ``sft``).
An unknown or ambiguous key is an error listing close matches. A bool field given with no value is set true.

Values are parsed to the field's type, from YAML or from a string: bool (true/false/yes/no/1/0), int (also a
product such as ``3584*28*28``), float (``1e-6`` too, which YAML itself would read as a string), str, lists
(``tiou,format`` or ``[tiou, format]``) and ``none``/``null`` for optional fields.

>>> cfg = load_config(None, ["--beta", "0.04", "--reward_funcs", "iou,format", "--data.total_pixels=3584*28*28"])
>>> cfg.train.beta, cfg.train.reward_funcs, cfg.data.total_pixels
(0.04, ['iou', 'format'], 2809856)
>>> load_config(None, ["--betta", "0"])
Traceback (most recent call last):
...
timegrpo.config.sections.ConfigError: unknown option --betta; did you mean --beta?
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import yaml

from timegrpo.config.sections import (
    ConfigError,
    DataConfig,
    GRPOConfig,
    ModelConfig,
    SFTConfig,
    TrainConfig,
)

#: Recipe sections and their dataclasses, in file order.
SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": GRPOConfig, "sft": SFTConfig}
TOP_LEVEL = ("method",)

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}
_PRODUCT = re.compile(r"^\s*\d+(\s*\*\s*\d+)*\s*$")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


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
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip()
            text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {_type_name(item)}, got {value!r}")
        return [coerce_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
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
            product = 1
            for factor in value.split("*"):
                product *= int(factor)
            return product
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
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")


def _all_options() -> dict[str, list[str]]:
    """Bare key -> qualified names (``beta`` -> ``['train.beta']``), including top-level keys."""
    options: dict[str, list[str]] = {key: [key] for key in TOP_LEVEL}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            options.setdefault(f.name, []).append(f"{section}.{f.name}")
    return options


def _did_you_mean(key: str, options: dict[str, list[str]], prefix: str = "--") -> str:
    names = sorted(set(options) | {q for qs in options.values() for q in qs})
    same_name = options.get(key.rsplit(".", 1)[-1], [])  # right key, wrong section
    close = same_name + [c for c in difflib.get_close_matches(key, names, n=4, cutoff=0.6) if c not in same_name]
    if not close:
        return f"; sections are {', '.join(SECTIONS)} (see timegrpo.config.format_help())"
    return "; did you mean " + ", ".join(f"{prefix}{c}" for c in close) + "?"


def resolve_key(key: str, prefer_section: str | None = None) -> str:
    """``beta`` -> ``train.beta``; ``train.beta`` -> itself; errors for unknown or ambiguous keys."""
    key = key.replace("-", "_")
    options = _all_options()
    qualified = {q for qs in options.values() for q in qs}
    if key in qualified:
        return key
    if "." in key:
        raise ConfigError(f"unknown option --{key}{_did_you_mean(key, options)}")
    found = options.get(key)
    if not found:
        raise ConfigError(f"unknown option --{key}{_did_you_mean(key, options)}")
    if len(found) == 1:
        return found[0]
    preferred = f"{prefer_section}.{key}"
    if preferred in found:
        return preferred
    raise ConfigError(f"option --{key} is ambiguous: say which with {' or '.join('--' + q for q in found)}")


def parse_overrides(tokens: Sequence[str], prefer_section: str | None = None) -> list[tuple[str, str | None]]:
    """``['--beta', '0', '--use_lora']`` -> ``[('train.beta', '0'), ('model.use_lora', None)]``."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"expected an option like --train.beta 0, got {token!r}")
        key, value = token[2:], None
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value, i = tokens[i + 1], i + 2
        else:
            i += 1
        out.append((resolve_key(key, prefer_section), value))
    return out


def _field_type(qualified: str) -> Any:
    if qualified in TOP_LEVEL:
        return _field_types(TrainConfig)[qualified]
    section, name = qualified.split(".", 1)
    return _field_types(SECTIONS[section])[name]


def _flatten(raw: Any, source: str) -> dict[str, Any]:
    """A recipe mapping -> ``{'method': ..., 'train.beta': ...}`` with every value coerced; structure checked."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections {', '.join(SECTIONS)}")
    options = _all_options()
    values: dict[str, Any] = {}
    for key, body in raw.items():
        if key in TOP_LEVEL:
            values[key] = coerce_value(body, _field_type(key), f"{source}: {key}")
            continue
        if key not in SECTIONS:
            close = difflib.get_close_matches(str(key), [*TOP_LEVEL, *SECTIONS], n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{source}: unknown section {key!r}{hint} (known: {', '.join([*TOP_LEVEL, *SECTIONS])})")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: section {key!r} must be a mapping of field: value")
        known = {f.name for f in dataclasses.fields(SECTIONS[key])}
        for name, value in body.items():
            qualified = f"{key}.{name}"
            if name not in known:
                hint = _did_you_mean(qualified, options, prefix="")
                raise ConfigError(f"{source}: unknown key {qualified}{hint}")
            values[qualified] = coerce_value(value, _field_type(qualified), f"{source}: {qualified}")
    return values


def _read_recipe(path: str | Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"recipe {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from None
    return _flatten(raw, f"recipe {path}")


def config_from_flat(values: dict[str, Any]) -> TrainConfig:
    """Build (and validate) a :class:`TrainConfig` from already-typed ``{'train.beta': 0.04, 'method': ...}``."""
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    top: dict[str, Any] = {}
    for qualified, value in values.items():
        if qualified in TOP_LEVEL:
            top[qualified] = value
        else:
            section, name = qualified.split(".", 1)
            sections[section][name] = value
    built = {name: cls(**sections[name]) for name, cls in SECTIONS.items()}
    return TrainConfig(**top, **built)


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> TrainConfig:
    """A validated :class:`TrainConfig` from a nested dict shaped like a recipe (e.g. :func:`to_dict`'s output)."""
    return config_from_flat(_flatten(data, source))


def load_config(
    path: str | Path | None, overrides: Sequence[str] = (), *, prefer_section: str | None = None
) -> TrainConfig:
    """Load a recipe (``None``: all defaults), apply ``overrides`` (``['--train.beta', '0', ...]``), validate.

    ``prefer_section`` resolves bare keys present in several sections (``--learning_rate`` is in ``train`` and
    ``sft``); without it such a key is an error. Every error is a :class:`ConfigError` naming the recipe or
    option and the field.
    """
    values = _read_recipe(path) if path is not None else {}
    for qualified, raw in parse_overrides(overrides, prefer_section):
        tp = _field_type(qualified)
        if raw is None:
            if tp is not bool:
                raise ConfigError(f"option --{qualified} needs a value ({_type_name(tp)})")
            raw = "true"
        values[qualified] = coerce_value(raw, tp, f"--{qualified}")
    try:
        return config_from_flat(values)
    except ConfigError as exc:
        source = f"recipe {path}" if path is not None else "defaults"
        given = f" with overrides {' '.join(overrides)}" if overrides else ""
        raise ConfigError(f"{exc} (in {source}{given})") from None


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The nested dict of a config (``method`` first, then the sections), plain YAML/JSON types only."""
    return {"method": cfg.method, **{name: dataclasses.asdict(getattr(cfg, name)) for name in SECTIONS}}


def to_yaml(cfg: TrainConfig, header: str | None = None) -> str:
    """The config as a recipe YAML that :func:`load_config` reads back to an equal config."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return text


def save_config(cfg: TrainConfig, path: str | Path, header: str | None = None) -> Path:
    """Write :func:`to_yaml` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_yaml(cfg, header), encoding="utf-8")
    return path


def format_help() -> str:
    """Every option as ``--section.key (type, default): help``, one per line, by section."""
    lines = [f"--method (str, default 'grpo'): {dataclasses.fields(TrainConfig)[0].metadata['help']}"]
    for section, cls in SECTIONS.items():
        lines.append(f"\n[{section}]")
        types_ = _field_types(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            lines.append(f"--{section}.{f.name} ({_type_name(types_[f.name])}, default {default!r}): {f.metadata['help']}")
    return "\n".join(lines)
