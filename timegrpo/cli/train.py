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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("timegrpo.train")


def _launch_line(args: argparse.Namespace, command: str) -> str:
    parts = ["timegrpo", command] + (["--config", args.config] if args.config else []) + list(args.overrides)
    return " ".join(parts)


def _run(args: argparse.Namespace, command: str) -> Any:
    """Build the command's trainer from the recipe, save the resolved config, resume if asked, train.
    Returns the trainer (None after --print-config)."""
    from timegrpo.config import RecipeConfig, core, save_config
    from timegrpo.trainer.build import build_sft_trainer, build_trainer

    cfg = core.from_args(RecipeConfig, args, prefer_section="sft" if command == "sft" else "train")
    if cfg is None:
        return None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
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
    from timegrpo.config import RecipeConfig, core

    for name, handler, help_text in (("train", run_train, "RL post-training (GRPO / OPD) from a recipe"),
                                     ("sft", run_sft, "supervised warm start on the same data path")):
        core.add_command(subparsers, name, RecipeConfig, handler, help=help_text, description=__doc__)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m timegrpo.train ARGS`` (what ``accelerate launch -m timegrpo.train`` runs) is
    ``timegrpo train ARGS``."""
    from timegrpo.cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    debug = ["--debug"] if "--debug" in args else []
    return cli_main([*debug, "train", *(a for a in args if a != "--debug")])
