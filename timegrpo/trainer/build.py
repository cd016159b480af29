"""Trainers from a recipe: the model, the samples and the frame source a :class:`timegrpo.config.RecipeConfig`
names (with the ``masking`` section's frame transform for ``timegrpo train``), and the Accelerator its section asks
for (mixed precision, wandb, output folder)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from timegrpo.config import ConfigError
from timegrpo.data.source import FrameTransform, VideoSource, video_source
from timegrpo.trainer.grpo import GRPOTrainer
from timegrpo.trainer.loop import TrainLoop, make_accelerator
from timegrpo.trainer.periodic_eval import PeriodicEval, periodic_eval
from timegrpo.trainer.sft import SFTTrainer

logger = logging.getLogger(__name__)


def load_samples(cfg: Any, which: str = "train") -> list[Any]:
    """The annotation samples of ``data.train_file`` (or ``eval_file``), with the reader's report logged."""
    from timegrpo.data.formats import load_annotations

    d = cfg.data
    path = d.train_file if which == "train" else d.eval_file
    if not path:
        raise ConfigError(f"data.{which}_file is not set: pass --data.{which}_file PATH or set it in the recipe")
    samples, report = load_annotations(path, d.format, on_bad=d.on_bad, durations=d.durations,
                                       video_dir=d.video_dir, drop_duplicates=d.drop_duplicates)
    logger.info("%s: %d samples (%s); anomalies %s", path, len(samples), report.format, dict(report.counts))
    if not samples:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items())) or "none"
        raise ConfigError(f"data.{which}_file: no sample of {path} is left to use ({report.records} records, dropped "
                          f"under data.on_bad {d.on_bad}: {dropped}); check data.video_dir ({d.video_dir}) and "
                          "data.format, or inspect the file with `timegrpo data inspect`")
    limit = d.max_train_samples if which == "train" else d.max_eval_samples
    return samples[:limit] if limit else samples


def build_evaluator(cfg: Any, section: Any) -> PeriodicEval | None:
    """Evaluation during training on ``data.eval_file`` every ``section.eval_steps`` (None when 0)."""
    return periodic_eval(cfg, section, load_samples(cfg, "eval")) if section.eval_steps else None


def build_videos(cfg: Any, processor: Any) -> VideoSource:
    """The frame source of the recipe's video settings (patch size taken from the processor)."""
    from timegrpo.data.video import VideoSampling

    patch = getattr(processor.image_processor, "patch_size", 14)
    sampling = VideoSampling(**cfg.data.video_sampling_kwargs(), image_patch_size=patch)
    return video_source(sampling, cache_dir=cfg.data.frame_cache_dir)


def build_frame_transform(cfg: Any, samples: Any) -> FrameTransform | None:
    """The recipe's curriculum masking (section ``masking``) as a frame transform, or None when it is off.

    Masking picks samples by ``meta["difficulty_bucket"]``; when no training sample carries one the run stops
    (masking would silently do nothing); samples without one are counted, logged, and shown unchanged.
    """
    from collections import Counter

    from timegrpo.data.masking import CurriculumMasking

    m = cfg.masking
    if not m.on:
        return None
    buckets = Counter(s.meta.get("difficulty_bucket") for s in samples)
    if not set(buckets) - {None}:
        raise ConfigError(
            f"masking.max_fraction: masking is on ({m.max_fraction}) but no sample of data.train_file "
            f"{cfg.data.train_file} has a difficulty bucket (meta 'difficulty_bucket'); run `timegrpo curriculum "
            "score` and `timegrpo curriculum select --method dea_stratified` first and train on the selected file, "
            "or set masking.max_fraction: 0")
    masked = sum(n for b, n in buckets.items() if b in m.buckets)
    logger.info("curriculum masking: %d of %d training samples in buckets %s (all buckets: %s)", masked,
                len(samples), ", ".join(m.buckets), dict(buckets))
    if buckets.get(None):
        logger.warning("curriculum masking: %d training samples have no difficulty bucket; they are never masked",
                       buckets[None])
    return CurriculumMasking(m.max_fraction, m.until, m.order, seed=cfg.train.seed, buckets=m.buckets)


def load_model(cfg: Any) -> tuple[Any, Any]:
    """The recipe's policy (dtype, attention, what trains, LoRA) and its processor."""
    from timegrpo.models.loading import load_policy

    m = cfg.model
    return load_policy(
        m.model_name_or_path, dtype=m.torch_dtype, attn_implementation=m.attn_implementation,
        freeze_vision_tower=m.freeze_vision_tower, train_merger=m.train_merger, use_lora=m.use_lora,
        lora_kwargs={"r": m.lora_r, "alpha": m.lora_alpha, "dropout": m.lora_dropout,
                     "target_modules": list(m.lora_target_modules)},
        gradient_checkpointing=m.gradient_checkpointing, trust_remote_code=m.trust_remote_code, revision=m.revision)


def section_accelerator(section: Any) -> Any:
    """The Accelerator of a ``train`` or ``sft`` section: accumulation, bf16, wandb, ``output_dir``.

    It must exist before the model is loaded (ZeRO-3's ``zero3_init_flag`` needs that).
    """
    return make_accelerator(
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        mixed_precision="bf16" if section.bf16 else "no",
        log_with="wandb" if section.report_to == "wandb" else None,
        project_dir=section.output_dir,
    )


def _init_trackers(trainer: TrainLoop, cfg: Any) -> None:
    section = trainer.args
    if section.report_to == "wandb":
        from timegrpo.config import to_dict

        trainer.accelerator.init_trackers(
            "timegrpo", config=to_dict(cfg),
            init_kwargs={"wandb": {"name": section.run_name or Path(section.output_dir).name}})


def load_frozen_model(cfg: Any, name_or_path: str) -> Any:
    """A frozen model in the recipe's dtype and attention (a reference, a teacher); created after the
    Accelerator, so that ZeRO-3 loads it sharded."""
    from timegrpo.models.loading import load_frozen

    m = cfg.model
    return load_frozen(name_or_path, dtype=m.torch_dtype, attn_implementation=m.attn_implementation,
                       trust_remote_code=m.trust_remote_code)


def load_teacher(cfg: Any, processor: Any) -> Any:
    """The Video-OPD teacher ``train.teacher_model_name_or_path``, frozen, after checking (before its weights
    load) that its processor shares the student's tokens: a :class:`ConfigError` naming both models otherwise
    (:func:`timegrpo.models.loading.check_same_tokenizer`)."""
    from transformers import AutoProcessor

    from timegrpo.models.loading import check_same_tokenizer

    name = cfg.train.teacher_model_name_or_path
    try:
        teacher_processor = AutoProcessor.from_pretrained(name, trust_remote_code=cfg.model.trust_remote_code)
    except OSError as err:
        raise ConfigError(f"train.teacher_model_name_or_path: could not load the processor of the teacher {name!r} "
                          f"({err}); pass a local checkpoint folder or a Hub id reachable from this machine") from err
    check_same_tokenizer(processor, teacher_processor, student_name=cfg.model.model_name_or_path, teacher_name=name)
    return load_frozen_model(cfg, name)


def build_trainer(cfg: Any) -> GRPOTrainer:
    """A :class:`timegrpo.trainer.grpo.GRPOTrainer` for a recipe's ``train`` section (with its teacher for
    Video-OPD, and the ``masking`` section's frame transform). The reference (``beta != 0`` without LoRA) is a copy of the policy, or a fresh load of its
    checkpoint when ZeRO-3 shards the policy."""
    t = cfg.train
    accelerator = section_accelerator(t)
    samples = load_samples(cfg)
    transform = build_frame_transform(cfg, samples)  # checked before the model loads
    model, processor = load_model(cfg)
    teacher = load_teacher(cfg, processor) if t.teacher_model_name_or_path else None
    trainer = GRPOTrainer(cfg, model, processor, samples, build_videos(cfg, processor), accelerator=accelerator,
                          teacher=teacher, load_reference=lambda: load_frozen_model(cfg, cfg.model.model_name_or_path),
                          frame_transform=transform)
    trainer.evaluator = build_evaluator(cfg, t)
    _init_trackers(trainer, cfg)
    return trainer


def build_sft_trainer(cfg: Any) -> SFTTrainer:
    """A :class:`timegrpo.trainer.sft.SFTTrainer` for a recipe's ``sft`` section."""
    accelerator = section_accelerator(cfg.sft)
    model, processor = load_model(cfg)
    trainer = SFTTrainer(cfg, model, processor, load_samples(cfg), build_videos(cfg, processor),
                         accelerator=accelerator)
    trainer.evaluator = build_evaluator(cfg, cfg.sft)
    _init_trackers(trainer, cfg)
    return trainer
