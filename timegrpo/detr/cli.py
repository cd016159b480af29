"""``timegrpo detr train | rl | predict | demo | synth-features``.

Every config field is a flag (``--data.root DIR``, ``--train.epochs 5``; a name unique across sections also
works bare, e.g. ``--clip_len 1``), applied over the recipe given with ``--config``. Values are parsed as YAML
(``null``, ``[a, b]``, ``true``). Parsers are built from the config dataclasses without importing torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from timegrpo.detr import config as C

#: The synthetic recipe next to the package (a source checkout); `demo` uses it unless --config is given.
DEFAULT_DEMO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "detr" / "synthetic.yaml"
_PREFIX = "cfg:"


def _field_flags(parser: argparse.ArgumentParser, sections: tuple[str, ...], top_level: bool,
                 reserved: set[str]) -> None:
    """Add ``--section.name`` for every field of the given sections (and a bare ``--name`` where unique)."""
    entries: list[tuple[str, str, str]] = []  # (dotted key, field name, help)
    if top_level:
        entries += [(f.name, f.name, f.metadata.get("help", "")) for f in dataclasses.fields(C.DetrConfig)
                    if f.name not in C.SECTIONS]
    for section in sections:
        cls = type(getattr(C.DetrConfig(), section))
        entries += [(f"{section}.{f.name}", f.name, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]
    counts = Counter(name for _, name, _ in entries)
    group = parser.add_argument_group("config overrides (YAML values)")
    for key, name, help_text in entries:
        flags = [f"--{key}"]
        if "." in key and counts[name] == 1 and name not in reserved:
            flags.append(f"--{name}")
        group.add_argument(*flags, dest=_PREFIX + key, default=argparse.SUPPRESS, metavar="V",
                           help=help_text.replace("%", "%%"))


def _overrides(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for k, v in vars(args).items():
        if k.startswith(_PREFIX):
            out += [f"--{k[len(_PREFIX):]}", v]
    return out


def _load(args: argparse.Namespace) -> C.DetrConfig:
    return C.load_config(args.config, _overrides(args))


def _guard(handler: Any) -> Any:
    """Turn configuration and data errors into one clear line on stderr and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args) or 0)
        except (ValueError, FileNotFoundError, KeyError) as err:
            print(f"timegrpo detr: error: {err}", file=sys.stderr)
            return 2

    return run


def _train(args: argparse.Namespace) -> int:
    from timegrpo.detr.train import train_supervised

    result = train_supervised(_load(args))
    print(json.dumps({"stage": "supervised", **result}))
    return 0


def _rl(args: argparse.Namespace) -> int:
    from timegrpo.detr.rl import run_rl

    result = run_rl(_load(args))
    last = result.history[-1] if result.history else {}
    print(json.dumps({"stage": "rl", "checkpoint": result.checkpoint, "trainable_parameters": result.trainable_parameters,
                      "changed_parameters": result.changed_parameters, "val": last.get("val")}))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from timegrpo.detr.demo import predict_split

    cfg = _load(args)
    path, metrics = predict_split(cfg)
    print(json.dumps({"predictions": str(path), "metrics": metrics}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from timegrpo.detr.demo import run_demo

    if args.config is None:
        if not DEFAULT_DEMO_RECIPE.is_file():
            raise FileNotFoundError(f"{DEFAULT_DEMO_RECIPE} not found (not a source checkout); pass --config")
        args.config = str(DEFAULT_DEMO_RECIPE)
    report = run_demo(Path(args.out), _load(args), control=not args.no_control)
    print(json.dumps({k: report[k] for k in ("supervised", "rl", "seconds")}))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from timegrpo.detr.synth import synthesize

    cfg = C.load_config(args.config, _overrides(args)) if args.config else C.apply_overrides(C.DetrConfig(),
                                                                                             _overrides(args))
    if args.n is not None:
        cfg.synth.n_videos = args.n
    if args.seed is not None:
        cfg.synth.seed = args.seed
    summary = synthesize(args.out, cfg.synth)
    print(json.dumps({k: summary[k] for k in ("out", "queries", "video_feature_types", "video_dims", "text_dim")}))
    return 0


def add_synth_features_parser(subparsers: Any, name: str = "synth-features") -> argparse.ArgumentParser:
    """``synth-features --out DIR --n N --seed S``: write the synthetic clip-feature benchmark (for ``timegrpo data``)."""
    p = subparsers.add_parser(name, help="write the synthetic clip-feature benchmark (GIRL-DETR, lighthouse layout)",
                              usage=f"... {name} --out DIR [--n N] [--seed S] [--config RECIPE] [--synth.key VALUE ...]",
                              description="Planted, query-dependent events in clip features; writes "
                                          "annotations/{train,val,test}.jsonl and features/ under --out.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=None, help="number of videos (default: synth.n_videos)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: synth.seed)")
    p.add_argument("--config", default=None, help="take the synth section from this recipe")
    _field_flags(p, ("synth",), top_level=False, reserved={"n", "seed", "out", "config"})
    p.set_defaults(func=_guard(_synth))
    return p


def register(subparsers: Any) -> None:
    detr = subparsers.add_parser("detr", help="GIRL-DETR: moment retrieval on clip features + gradient-isolated RL")
    sub = detr.add_subparsers(dest="detr_command", metavar="ACTION")
    all_sections = tuple(s for s in C.SECTIONS if s != "synth")
    for name, handler, help_text in (
        ("train", _train, "supervised training (Hungarian matching, EMA, checkpoints, resume)"),
        ("rl", _rl, "gradient-isolated RL on the span/class/IoU heads"),
        ("predict", _predict, "write predictions (official Moment-DETR jsonl) and print R1/mIoU when GT exists"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text,
                           usage=f"timegrpo detr {name} --config RECIPE [--section.key VALUE ...]")
        p.add_argument("--config", required=True, help="recipe YAML (recipes/detr/*.yaml)")
        _field_flags(p, all_sections, top_level=True, reserved={"config"})
        p.set_defaults(func=_guard(handler))
    p = sub.add_parser("demo", help="synthetic benchmark -> supervised -> RL on CPU; writes OUT/report.json",
                       usage="timegrpo detr demo --out DIR [--config RECIPE] [--section.key VALUE ...]")
    p.add_argument("--out", required=True, help="output directory (data/, run/, report.json)")
    p.add_argument("--config", default=None, help=f"recipe (default: {DEFAULT_DEMO_RECIPE.name} of the checkout)")
    p.add_argument("--no-control", action="store_true", help="skip the continued-supervised control run")
    _field_flags(p, C.SECTIONS, top_level=True, reserved={"out", "config"})
    p.set_defaults(func=_guard(_demo))
    add_synth_features_parser(sub)
    detr.set_defaults(func=lambda args: (detr.print_help(), 2)[1])
