"""``timegrpo detr features | train | rl | predict | demo | synth-features``: GIRL-DETR (see :mod:`timegrpo.detr`).

The options of every action are the fields of :class:`timegrpo.detr.config.DetrConfig`, read by
:mod:`timegrpo.config.core` as for every other command: ``--config RECIPE`` (``recipes/detr/*.yaml``), then
``--section.key value`` overrides (``--data.root DIR``, ``--train.epochs 5``, ``--data.video_feat_dirs "[a, b]"``,
``--max_v_len null``); a key that is in one section only works bare (``--temperature 0.3``), and a key that is in
``data`` and ``synth`` means ``data``'s (``--clip_len 1``). ``--print-config`` prints the resolved recipe.
``synth-features`` takes the ``synth`` section only (its bare keys, ``--noise 0.1``, are ``synth``'s), and its
``--config`` may be a whole recipe: the ``synth`` section is read from it. Configuration and data errors are one
line on stderr and exit code 2. The parsers import no torch; the handlers do. ``features`` takes its own options
(:class:`timegrpo.detr.config.FeatureExtractConfig`: ``--videos DIR --annotations FILE --out DIR --clip-len 2``)
and writes the clip and query features that ``train`` reads.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timegrpo.cli import guard
from timegrpo.config import core
from timegrpo.detr.config import PREFER_SECTION, DetrConfig, FeatureExtractConfig, FeatureSynthConfig

#: The synthetic recipe next to the package (a source checkout); `demo` uses it unless --config is given.
DEFAULT_DEMO_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "detr" / "synthetic.yaml"


@dataclass
class SynthFeaturesOptions:
    """``synth-features``: the ``synth`` section of a recipe, alone."""

    synth: FeatureSynthConfig = core.section(FeatureSynthConfig, "synthetic clip-feature benchmark")


def _guard(handler: Any) -> Any:
    """Turn configuration and data errors into one clear line on stderr and exit code 2."""

    return guard("detr", handler, also=(ValueError, KeyError))


def _load(args: argparse.Namespace) -> DetrConfig | None:
    """The recipe of ``--config`` with the overrides; None after ``--print-config``."""
    return core.from_args(DetrConfig, args, prefer_section=PREFER_SECTION)


def _train(args: argparse.Namespace) -> int:
    from timegrpo.detr.train import train_supervised

    cfg = _load(args)
    if cfg is not None:
        print(json.dumps({"stage": "supervised", **train_supervised(cfg)}))
    return 0


def _rl(args: argparse.Namespace) -> int:
    from timegrpo.detr.compare import compare_rl_control

    cfg = _load(args)
    if cfg is None:
        return 0
    report = compare_rl_control(cfg, control=cfg.rl.control)
    (cfg.run_dir() / "rl" / "comparison.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"stage": "rl", **report}))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from timegrpo.detr.demo import predict_split

    cfg = _load(args)
    if cfg is not None:
        path, metrics = predict_split(cfg)
        print(json.dumps({"predictions": str(path), "metrics": metrics}))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from timegrpo.detr.demo import run_detr_demo

    if args.config is None:
        if not DEFAULT_DEMO_RECIPE.is_file():
            raise FileNotFoundError(f"{DEFAULT_DEMO_RECIPE} not found (not a source checkout); pass --config")
        args.config = str(DEFAULT_DEMO_RECIPE)
    cfg = _load(args)
    if cfg is not None:
        report = run_detr_demo(Path(args.out), cfg, control=not args.no_control)
        keys = ("supervised", "rl", "control", "rl_minus_control", "seeds", "seconds")
        print(json.dumps({k: report[k] for k in keys if k in report}))
    return 0


def _features(args: argparse.Namespace) -> int:
    from timegrpo.detr.extract import extract_features

    cfg = core.from_args(FeatureExtractConfig, args)
    if cfg is not None:
        print(json.dumps(extract_features(cfg)))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from timegrpo.detr.synth import synthesize

    recipe = core.read_yaml(DetrConfig, args.config, "recipe") if args.config else {}
    pinned = [*(["--synth.n_videos", str(args.n)] if args.n is not None else []),
              *(["--synth.seed", str(args.seed)] if args.seed is not None else [])]
    opts = core.load(SynthFeaturesOptions, None, [*getattr(args, "overrides", []), *pinned],
                     defaults={k: v for k, v in recipe.items() if k.startswith("synth.")})
    if args.print_config:
        print(core.to_yaml(opts), end="")
        return 0
    summary = synthesize(args.out, opts.synth)
    print(json.dumps({k: summary[k] for k in ("out", "queries", "video_feature_types", "video_dims", "text_dim")}))
    return 0


def add_synth_features_parser(subparsers: Any, name: str = "synth-features") -> argparse.ArgumentParser:
    """``synth-features --out DIR --n N --seed S``: write the synthetic clip-feature benchmark (also mounted under
    ``timegrpo data``)."""
    p = core.add_command(subparsers, name, SynthFeaturesOptions, _guard(_synth),
                         help="write the synthetic clip-feature benchmark (GIRL-DETR, lighthouse layout)",
                         description="Planted, query-dependent events in clip features; writes\n"
                                     "annotations/{train,val,test}.jsonl and features/ under --out.\n"
                                     "--config may be a whole GIRL-DETR recipe: its synth section is used.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=None, help="number of videos (default: synth.n_videos)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: synth.seed)")
    return p


#: The actions that read a recipe: name -> (handler, help).
RECIPE_ACTIONS = {
    "train": (_train, "supervised training (Hungarian matching, EMA, checkpoints, resume)"),
    "rl": (_rl, "gradient-isolated RL on the span/class/IoU heads, beside its control (RL minus control, paired)"),
    "predict": (_predict, "write predictions (official Moment-DETR jsonl) and print R1/mIoU when GT exists"),
}


def register(subparsers: Any) -> None:
    detr = subparsers.add_parser("detr", help="GIRL-DETR: moment retrieval on clip features + gradient-isolated RL")
    sub = detr.add_subparsers(dest="detr_command", metavar="ACTION")
    core.add_command(sub, "features", FeatureExtractConfig, _guard(_features),
                     help="CLIP clip and query features of videos + annotations, in the layout `train` reads",
                     description="CLIP image features per clip ({out}/clip/{vid}.npz['features']) and CLIP token "
                                 "features per query\n({out}/clip_text/qid{qid}.npz['last_hidden_state']), "
                                 "L2-normalised; resumable. {out}/features.json\nlists the data.* settings of a "
                                 "GIRL-DETR recipe that reads them.")
    for name, (handler, help_text) in RECIPE_ACTIONS.items():
        core.add_command(sub, name, DetrConfig, _guard(handler), help=help_text, config_required=True)
    p = core.add_command(sub, "demo", DetrConfig, _guard(_demo),
                         help="synthetic benchmark -> supervised -> RL on CPU; writes OUT/report.json",
                         description="synthetic benchmark -> supervised -> RL (-> control) on CPU; writes OUT/report.json.\n"
                                     f"--config defaults to {DEFAULT_DEMO_RECIPE.name} of the checkout.")
    p.add_argument("--out", required=True, help="output directory (data/, run/, report.json)")
    p.add_argument("--no-control", action="store_true", help="skip the continued-supervised control run")
    add_synth_features_parser(sub)
    detr.set_defaults(func=lambda args: (detr.print_help(), 2)[1])
