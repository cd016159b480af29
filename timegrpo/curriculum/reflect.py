"""``timegrpo curriculum reflect``: VideoTG-R1's Boundary Reflection Agent over an annotation file.

For every sample a frozen model sees the video with the annotated windows' frames replaced by black frames
(:func:`timegrpo.curriculum.reflection.hidden_frames`: timestamps, frame count and duration unchanged) and
answers ``samples`` times; a variant of :data:`timegrpo.curriculum.reflection.VARIANTS` says what it is asked
and how its answers decide the flag (the module docstring there has the rules).

The answers come from the training rollout code, as the scorer's do (:mod:`timegrpo.curriculum.score`): one
:func:`timegrpo.rollout.generate` call per ``batch_size`` prompts with ``G = samples`` completions each, the
vision tower once per video. They are written, one row ``{"qid", "completions", "truncated"}`` per sample, to
``<out>.answers.jsonl`` with the scorer's resumable machinery (a rerun skips the qids done, a cut last line is
redone, other generation settings stop the run unless ``--overwrite``). The verdicts are computed from the saved
completions when the run ends, so ``--agree`` and ``--min-iou`` can change on a rerun without new answers.

Output: ``OUT`` (moment_detr, written atomically) holds every sample with ``bra_flagged`` (bool),
``bra_reason`` (why, in words) and ``bra_answers`` (the parsed answers) in ``meta``; ``timegrpo curriculum
select`` drops the flagged ones. ``<out>.summary.json``: counts, the settings, and the flagged qids.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from timegrpo.curriculum.config import ReflectConfig
from timegrpo.curriculum.reflection import VARIANTS, hidden_frames
from timegrpo.curriculum.score import load_model, prepare_out, say
from timegrpo.data.schema import Sample
from timegrpo.evaluate.config import EvalError, require
from timegrpo.evaluate.predictions import PredictionWriter, read_predictions, write_atomic


def answers_path(out: Path) -> Path:
    """``bra.jsonl`` -> ``bra.answers.jsonl``."""
    return out.with_suffix(".answers.jsonl")


def hidden_source(videos: Any) -> Any:
    """A :data:`timegrpo.data.source.VideoSource` giving each sample's frames with its annotated windows black."""
    from timegrpo.data.source import frame_times

    def load(sample: Sample) -> tuple[Any, Any]:
        frames, meta = videos(sample)
        return hidden_frames(frames, frame_times(meta), sample.windows), meta

    return load


def fingerprint(cfg: ReflectConfig, video: Any) -> dict[str, Any]:
    """What decides the answers; a resumed run must match it (the verdict settings do not)."""
    assert cfg.model is not None and cfg.annotations is not None
    model = str(Path(cfg.model).resolve()) if Path(cfg.model).exists() else cfg.model
    return {"model": model, "annotations": str(Path(cfg.annotations).resolve()), "format": cfg.format,
            "variant": cfg.variant, "samples": cfg.samples, "template": cfg.grounding_template(),
            "dtype": cfg.dtype, "sampling": dataclasses.asdict(cfg.sampling), "video": dataclasses.asdict(video)}


def iter_answers(model: Any, processor: Any, samples: Sequence[Sample], videos: Any, cfg: ReflectConfig
                 ) -> Iterator[list[dict[str, Any]]]:
    """Answer rows of ``samples`` (on the hidden videos), one list per ``generate`` call."""
    import torch

    from timegrpo.evaluate.engine import explicit_generation_config
    from timegrpo.prompts import get_template, prompt_inputs
    from timegrpo.rollout import generate

    params, template = cfg.sampling_params(), get_template(cfg.grounding_template())
    device = next(model.parameters()).device
    g = params.num_generations
    with explicit_generation_config(model, params):
        for i in range(0, len(samples), cfg.batch_size):
            batch = samples[i:i + cfg.batch_size]
            inputs = prompt_inputs(processor, batch, videos, template)
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            out = generate(model, processor, inputs, params)
            yield [{"qid": s.qid, "completions": out.completions[j * g:(j + 1) * g],
                    "truncated": int(out.truncated[j * g:(j + 1) * g].sum())} for j, s in enumerate(batch)]


def verdict_meta(sample: Sample, completions: Sequence[str], cfg: ReflectConfig) -> dict[str, Any]:
    """The ``meta`` fields one sample gets from its answers: ``bra_flagged``, ``bra_reason``, ``bra_answers``."""
    variant = VARIANTS.get(cfg.variant)
    assert sample.duration is not None
    parsed = [variant.parse(c, sample.duration) for c in completions]
    flagged, reason = variant.verdict(sample.windows, parsed, sample.duration, agree=cfg.agree, min_iou=cfg.min_iou)
    return {"bra_flagged": flagged, "bra_reason": reason, "bra_answers": json.loads(json.dumps(parsed))}


def _pool(cfg: ReflectConfig) -> list[Sample]:
    from timegrpo.data.formats import load_annotations

    assert cfg.annotations is not None
    samples, _ = load_annotations(cfg.annotations, cfg.format, on_bad=cfg.on_bad, durations=cfg.durations,
                                  video_dir=cfg.videos)
    samples = samples[: cfg.limit] if cfg.limit is not None else samples
    bad = [s.qid for s in samples if not s.windows or s.duration is None]
    if bad:
        raise EvalError(f"{len(bad)} samples of {cfg.annotations} have no ground-truth window or no duration (first: "
                        f"qid {bad[0]}); the agent hides the annotated window, so it needs both")
    return samples


def _answer_all(cfg: ReflectConfig, samples: list[Sample], rows_path: Path) -> int:
    """Answer the samples not yet in ``rows_path``; returns how many were done before."""
    import torch
    from tqdm import tqdm

    from timegrpo.data.source import video_source
    from timegrpo.data.video import VideoSampling
    from timegrpo.evaluate.engine import memo_videos

    model, processor = load_model(cfg)
    patch = int(getattr(getattr(model.config, "vision_config", None), "patch_size", 14))
    video = VideoSampling(**cfg.video.data_config().video_sampling_kwargs(), image_patch_size=patch)
    done = prepare_out(rows_path, fingerprint(cfg, video), cfg.overwrite, what="answers")
    pending = [s for s in samples if s.qid not in done]
    say(f"{len(samples)} samples: {len(samples) - len(pending)} already answered, {len(pending)} to do "
        f"({cfg.variant} variant, {cfg.samples} answers each)")
    torch.manual_seed(cfg.sampling.seed)
    videos = hidden_source(memo_videos(video_source(video, cache_dir=cfg.frame_cache)))
    bar = tqdm(total=len(pending), unit="query", desc="reflect", file=sys.stderr, dynamic_ncols=True,
               mininterval=1.0)
    with PredictionWriter(rows_path) as writer:
        for rows in iter_answers(model, processor, pending, videos, cfg):
            writer.write(rows)
            bar.update(len(rows))
    bar.close()
    return len(samples) - len(pending)


def run_reflect(cfg: ReflectConfig) -> dict[str, Any]:
    """The whole ``timegrpo curriculum reflect`` run (see the module docstring); returns the summary."""
    import os

    from timegrpo.data.convert import write_moment_detr

    require(cfg, "model", "annotations", "out")
    assert cfg.out is not None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise EvalError("timegrpo curriculum reflect runs in one process; launch it without accelerate/torchrun")
    samples = _pool(cfg)
    out, rows_path = Path(cfg.out), answers_path(Path(cfg.out))
    before = _answer_all(cfg, samples, rows_path)
    rows, _ = read_predictions(rows_path)
    by_qid = {str(r["qid"]): r for r in rows}
    judged = [dataclasses.replace(s, meta={**s.meta, **verdict_meta(s, by_qid[s.qid]["completions"], cfg)})
              for s in samples]
    write_moment_detr(judged, out)
    flagged = [s.qid for s in judged if s.meta["bra_flagged"]]
    summary = {"out": str(out), "answers": str(rows_path), "variant": cfg.variant, "samples": cfg.samples,
               "agree": cfg.agree, "min_iou": cfg.min_iou, "template": cfg.grounding_template(),
               "n_samples": len(samples), "n_done_before": before, "n_flagged": len(flagged),
               "unparsed_answers": sum(a is None for s in judged for a in s.meta["bra_answers"]),
               "flagged": flagged}
    write_atomic(out.with_suffix(".summary.json"), json.dumps(summary, indent=2) + "\n")
    return {k: v for k, v in summary.items() if k != "flagged"}
