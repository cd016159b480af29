"""``timegrpo train`` / ``timegrpo sft``: run a recipe.

    timegrpo train --config recipes/X.yaml [--key value ...]
    accelerate launch --config_file launch/zero3.yaml -m timegrpo.train --config recipes/X.yaml [--key value ...]
    timegrpo sft --config recipes/X.yaml [--key value ...]

Overrides address any config field, ``--train.beta 0`` or (when unambiguous) ``--beta 0``; bare keys that
exist in both ``train`` and ``sft`` go to the section of the command. The resolved config is written to
``output_dir/config.yaml`` before training starts, so every run can be reproduced from its own folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("timegrpo.train")


def load_samples(cfg: Any, which: str = "train") -> list[Any]:
    """The annotation samples of ``data.train_file`` (or ``eval_file``), with the reader's report logged."""
    from timegrpo.data.formats import load_annotations

    d = cfg.data
    path = d.train_file if which == "train" else d.eval_file
    if not path:
        raise SystemExit(f"data.{which}_file is not set: pass --data.{which}_file PATH or set it in the recipe")
    samples, report = load_annotations(path, d.format, on_bad=d.on_bad, durations=d.durations,
                                       video_dir=d.video_dir)
    logger.info("%s: %d samples (%s); anomalies %s", path, len(samples), report.format, dict(report.counts))
    limit = d.max_train_samples if which == "train" else d.max_eval_samples
    return samples[:limit] if limit else samples


def build_videos(cfg: Any, processor: Any) -> Any:
    """The frame source of the recipe's video settings (patch size taken from the processor)."""
    from timegrpo.data.video import VideoSampling
    from timegrpo.inputs import video_source

    patch = getattr(processor.image_processor, "patch_size", 14)
    sampling = VideoSampling(**cfg.data.video_sampling_kwargs(), image_patch_size=patch)
    return video_source(sampling, cache_dir=cfg.data.frame_cache_dir)


def load_model(cfg: Any) -> tuple[Any, Any]:
    from timegrpo.models.loading import load_policy

    m = cfg.model
    return load_policy(
        m.model_name_or_path, dtype=m.torch_dtype, attn_implementation=m.attn_implementation,
        freeze_vision_tower=m.freeze_vision_tower, train_merger=m.train_merger, use_lora=m.use_lora,
        lora_kwargs={"r": m.lora_r, "alpha": m.lora_alpha, "dropout": m.lora_dropout,
                     "target_modules": list(m.lora_target_modules)},
        gradient_checkpointing=m.gradient_checkpointing, trust_remote_code=m.trust_remote_code)


def build_trainer(cfg: Any) -> Any:
    """A :class:`timegrpo.trainer.GRPOTrainer` for a loaded :class:`timegrpo.config.RecipeConfig`.

    The Accelerator exists before the model is loaded (ZeRO-3's ``zero3_init_flag`` needs that).
    """
    from timegrpo.trainer import GRPOTrainer, make_accelerator

    t = cfg.train
    accelerator = make_accelerator(
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        mixed_precision="bf16" if t.bf16 else "no",
        log_with="wandb" if t.report_to == "wandb" else None,
        project_dir=t.output_dir,
    )
    model, processor = load_model(cfg)
    teacher = None
    if t.teacher_model_name_or_path:
        from timegrpo.models.loading import load_policy

        teacher, _ = load_policy(t.teacher_model_name_or_path, dtype=cfg.model.torch_dtype,
                                 attn_implementation=cfg.model.attn_implementation)
    samples = load_samples(cfg)
    trainer = GRPOTrainer(cfg, model, processor, samples, build_videos(cfg, processor), accelerator=accelerator,
                          teacher=teacher)
    if t.report_to == "wandb":
        from timegrpo.config import to_dict

        accelerator.init_trackers("timegrpo", config=to_dict(cfg),
                                  init_kwargs={"wandb": {"name": t.run_name or Path(t.output_dir).name}})
    return trainer


def _parse(argv: Sequence[str] | None, prog: str) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return parser.parse_known_args(argv)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="recipe YAML (its first line is its launch command)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _resolve(args: argparse.Namespace, section: str) -> Any:
    """The recipe with the command line's overrides (bare keys go to ``section``); None after --print-config."""
    from timegrpo.config import load_recipe, to_yaml

    cfg = load_recipe(args.config, list(args.overrides), prefer_section=section)
    if args.print_config:
        print(to_yaml(cfg))
        return None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return cfg


def run_train(args: argparse.Namespace) -> int:
    from timegrpo.config import save_config

    overrides = list(args.overrides)
    cfg = _resolve(args, "train")
    if cfg is None:
        return 0
    trainer = build_trainer(cfg)
    if trainer.accelerator.is_main_process:
        Path(cfg.train.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(cfg.train.output_dir) / "config.yaml", header=_launch_line(args, overrides))
    if cfg.train.resume_from_checkpoint:
        trainer.load_checkpoint(cfg.train.resume_from_checkpoint)
    trainer.train()
    final = trainer.output_dir / f"checkpoint-{trainer.state['step']}"
    if cfg.train.push_to_hub and trainer.accelerator.is_main_process:
        from timegrpo.hub import PushError, push_checkpoint

        try:  # a failed upload must not lose the run: the checkpoint is already saved
            result = push_checkpoint(final, cfg.train.hub_model_id, check="meta")
            logger.info("pushed %s: %s", final, result.url)
        except PushError as err:
            logger.error("push_to_hub failed: %s (checkpoint saved; retry with `timegrpo push %s --repo-id %s`)",
                         err, final, cfg.train.hub_model_id)
    trainer.accelerator.end_training()
    return 0


def run_sft(args: argparse.Namespace) -> int:
    from timegrpo.config import save_config
    from timegrpo.sft import train_sft

    overrides = list(args.overrides)
    cfg = _resolve(args, "sft")
    if cfg is None:
        return 0
    s = cfg.sft
    model, processor = load_model(cfg)
    samples = load_samples(cfg)
    steps = s.max_steps if s.max_steps > 0 else -(-int(s.num_train_epochs * len(samples)) // s.per_device_train_batch_size)
    out = Path(s.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml", header=_launch_line(args, overrides, "sft"))
    logs = train_sft(model, processor, samples, build_videos(cfg, processor), template=cfg.data.prompt_template,
                     learning_rate=s.learning_rate, batch_size=s.per_device_train_batch_size, max_steps=steps,
                     seed=s.seed, weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm,
                     gradient_accumulation_steps=s.gradient_accumulation_steps)
    model.save_pretrained(out / "final")
    processor.save_pretrained(out / "final")
    print(f"sft: {len(logs)} steps, final loss {logs[-1]['loss']:.4f}; model saved to {out / 'final'}")
    return 0


def _launch_line(args: argparse.Namespace, overrides: Sequence[str], command: str = "train") -> str:
    parts = ["timegrpo", command] + (["--config", args.config] if args.config else []) + list(overrides)
    return " ".join(parts)


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, handler, help_text in (("train", run_train, "RL post-training (GRPO / OPD) from a recipe"),
                                     ("sft", run_sft, "supervised warm start on the same data path")):
        p = subparsers.add_parser(name, help=help_text, description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(p)
        p.set_defaults(func=handler, accepts_overrides=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m timegrpo.train`` (what ``accelerate launch -m timegrpo.train`` runs)."""
    args, overrides = _parse(argv, "timegrpo.train")
    args.overrides = overrides
    return run_train(args)


if __name__ == "__main__":
    sys.exit(main())
