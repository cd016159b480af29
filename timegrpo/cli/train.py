"""``timegrpo train`` / ``timegrpo sft``: run a recipe.

    timegrpo train --config recipes/X.yaml [--key value ...]
    accelerate launch --config_file launch/zero3.yaml -m timegrpo.train --config recipes/X.yaml [--key value ...]
    timegrpo sft --config recipes/X.yaml [--key value ...]

Overrides address any config field, ``--train.beta 0`` or (when unambiguous) ``--beta 0``; bare keys that
exist in both ``train`` and ``sft`` go to the section of the command. The resolved config is written to
``output_dir/config.yaml`` before training starts, so every run can be reproduced from its own folder.
Both commands resume with ``resume_from_checkpoint`` and upload with ``push_to_hub``; ``timegrpo sft`` also
writes the final model to ``output_dir/final`` (what a GRPO recipe's ``model_name_or_path`` points at).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("timegrpo.train")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="recipe YAML (its first line is its launch command)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _resolve(args: argparse.Namespace, section: str) -> Any:
    """The recipe with the command line's overrides (bare keys go to ``section``); None after --print-config."""
    from timegrpo.config import load_config, to_yaml

    cfg = load_config(args.config, list(args.overrides), prefer_section=section)
    if args.print_config:
        print(to_yaml(cfg))
        return None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return cfg


def _launch_line(args: argparse.Namespace, command: str) -> str:
    parts = ["timegrpo", command] + (["--config", args.config] if args.config else []) + list(args.overrides)
    return " ".join(parts)


def _run(args: argparse.Namespace, command: str) -> Any:
    """Build the command's trainer from the recipe, save the resolved config, resume if asked, train.
    Returns the trainer (None after --print-config)."""
    from timegrpo.config import save_config
    from timegrpo.trainer.build import build_sft_trainer, build_trainer

    cfg = _resolve(args, command if command == "sft" else "train")
    if cfg is None:
        return None
    trainer = build_sft_trainer(cfg) if command == "sft" else build_trainer(cfg)
    section = trainer.args
    if trainer.accelerator.is_main_process:
        Path(section.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(section.output_dir) / "config.yaml", header=_launch_line(args, command))
    if section.resume_from_checkpoint:
        trainer.load_checkpoint(section.resume_from_checkpoint)
    trainer.train()
    return trainer


def _push(trainer: Any, folder: Path) -> None:
    """Upload ``folder`` when the section asks (``push_to_hub``); a failed upload keeps the saved run."""
    section = trainer.args
    if not (section.push_to_hub and trainer.accelerator.is_main_process):
        return
    from timegrpo.hub import PushError, push_checkpoint

    try:
        result = push_checkpoint(folder, section.hub_model_id, check="meta")
        logger.info("pushed %s: %s", folder, result.url)
    except PushError as err:
        logger.error("push_to_hub failed: %s (checkpoint saved; retry with `timegrpo push %s --repo-id %s`)",
                     err, folder, section.hub_model_id)


def run_train(args: argparse.Namespace) -> int:
    trainer = _run(args, "train")
    if trainer is None:
        return 0
    _push(trainer, trainer.output_dir / f"checkpoint-{trainer.state['step']}")
    trainer.accelerator.end_training()
    return 0


def run_sft(args: argparse.Namespace) -> int:
    trainer = _run(args, "sft")
    if trainer is None:
        return 0
    final = trainer.save_pretrained(trainer.output_dir / "final")
    if trainer.accelerator.is_main_process:
        last = trainer.history[-1]["loss"] if trainer.history else float("nan")
        print(f"sft: {trainer.state['step']} steps, final loss {last:.4f}; model saved to {final}")
    _push(trainer, final)
    trainer.accelerator.end_training()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, handler, help_text in (("train", run_train, "RL post-training (GRPO / OPD) from a recipe"),
                                     ("sft", run_sft, "supervised warm start on the same data path")):
        p = subparsers.add_parser(name, help=help_text, description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p)
        p.set_defaults(func=handler, accepts_overrides=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m timegrpo.train`` (what ``accelerate launch -m timegrpo.train`` runs): ``timegrpo train``."""
    parser = argparse.ArgumentParser(prog="timegrpo.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args, overrides = parser.parse_known_args(argv)
    args.overrides = overrides
    return run_train(args)
