"""``timegrpo curriculum score``: the model answers each query ``n`` times; one scores row per sample.

A row is ``{"qid", "ious": [n IoUs], "unparsed": k, "truncated": k}`` plus ``"completions"`` (the n texts) when
asked. The answers come from the training rollout code: :func:`timegrpo.prompts.prompt_inputs` builds
``batch_size`` prompts, :func:`timegrpo.rollout.generate` samples a group of ``G = n`` completions for each (the
vision tower runs once per video, not once per completion), and each completion's IoU is the training reward's
(:func:`timegrpo.parsing.parse_answer`, :func:`timegrpo.spans.temporal_iou`; unparsable = 0). Every sampling
value is explicit (:func:`timegrpo.evaluate.engine.explicit_generation_config`).

Resuming works as ``timegrpo eval``'s does, with its prediction-file machinery
(:mod:`timegrpo.evaluate.predictions`): rows are written and flushed one by one, a rerun skips the qids already
in the file (a partially written last line from a kill is cut off and its sample scored again), and the settings
that decide the scores are saved in ``<name>.config.json`` beside it; a rerun with other settings stops
(``--overwrite`` starts over). The torch seed is set once per run, so a resumed file is not bit-identical to an
uninterrupted one (its rows are draws from the same distribution). One process: no data parallelism here yet.
A model is loaded only when some sample is left to score, and freed after its pass.

With ``--teacher`` (Video-OPD's TVDF) the teacher answers each query ``teacher_n`` times first, into its own
resumable file (``<out stem>.teacher.jsonl`` or ``--teacher-scores``: a file several runs can share, as the TVDF
rounds do, since the teacher does not change); then every row of the model carries ``"teacher_ious"`` beside
``"ious"`` (the teacher's settings are part of the model file's saved settings).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from timegrpo.curriculum.config import CurriculumScoreConfig
from timegrpo.data.schema import Sample
from timegrpo.evaluate.config import EvalError, require
from timegrpo.evaluate.predictions import PredictionWriter, read_predictions, write_atomic
from timegrpo.parsing import parse_answer
from timegrpo.spans import temporal_iou


def say(msg: str) -> None:
    sys.stderr.write(f"timegrpo curriculum: {msg}\n")
    sys.stderr.flush()


def score_row(sample: Sample, completions: Sequence[str], truncated: Sequence[bool], *, strict: bool = False,
              keep_completions: bool = False) -> dict[str, Any]:
    """The scores row of ``sample`` from its ``n`` completions (IoU 0 for an unparsable one).

    >>> s = Sample("q1", "v", None, 30.0, "q", [(10.0, 20.0)])
    >>> score_row(s, ["<answer>12 to 20</answer>", "no answer"], [False, True])
    {'qid': 'q1', 'ious': [0.8, 0.0], 'unparsed': 1, 'truncated': 1}
    """
    spans = [parse_answer(c, sample.duration, strict=strict) for c in completions]
    row: dict[str, Any] = {"qid": sample.qid, "ious": [temporal_iou(p, sample.windows) for p in spans],
                           "unparsed": sum(p is None for p in spans), "truncated": sum(map(bool, truncated))}
    if keep_completions:
        row["completions"] = list(completions)
    return row


def config_path(out: Path) -> Path:
    """``scores.jsonl`` -> ``scores.config.json``."""
    return out.with_suffix(".config.json")


def fingerprint(cfg: CurriculumScoreConfig, video: Any, model: str, n: int) -> dict[str, Any]:
    """What decides the scores of ``model`` (``n`` answers per query); a resumed run must match it."""
    assert cfg.annotations is not None
    return {"model": model_id(model), "annotations": str(Path(cfg.annotations).resolve()), "format": cfg.format,
            "n": n, "completions": cfg.completions, "template": cfg.template, "strict_parse": cfg.strict_parse,
            "dtype": cfg.dtype, "sampling": dataclasses.asdict(cfg.sampling), "video": dataclasses.asdict(video)}


def model_id(name: str) -> str:
    """A model folder's absolute path, or the Hub id as given."""
    return str(Path(name).resolve()) if Path(name).exists() else name


def prepare_out(out: Path, settings: dict[str, Any], overwrite: bool) -> set[str]:
    """Ready ``out`` for writing: start over (``overwrite``), or check the saved settings and repair a
    partially written last line; returns the qids already scored."""
    side = config_path(out)
    if overwrite:
        out.unlink(missing_ok=True)
    elif out.is_file() and side.is_file():
        old = json.loads(side.read_text(encoding="utf-8"))
        diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
        if diffs:
            raise EvalError(f"{out} holds scores made with other settings ({'; '.join(diffs)}); use another --out, "
                            "or --overwrite to discard them")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(side, json.dumps(settings, indent=2) + "\n")
    records, partial = read_predictions(out, repair=True)
    if partial:
        say(f"{out} ended with a partially written line (an interrupted run): dropped it; its sample is scored again")
    return {str(r["qid"]) for r in records}


def iter_scores(model: Any, processor: Any, samples: Sequence[Sample], videos: Any,
                cfg: CurriculumScoreConfig, n: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """Scores rows of ``samples``, one list per ``generate`` call of ``batch_size`` prompts x ``n`` answers
    (default ``cfg.n``)."""
    import torch

    from timegrpo.evaluate.engine import explicit_generation_config
    from timegrpo.prompts import get_template, prompt_inputs
    from timegrpo.rollout import generate

    params, template = cfg.sampling_params(n), get_template(cfg.template)
    device = next(model.parameters()).device
    n = params.num_generations
    with explicit_generation_config(model, params):
        for i in range(0, len(samples), cfg.batch_size):
            batch = samples[i:i + cfg.batch_size]
            inputs = prompt_inputs(processor, batch, videos, template)
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            out = generate(model, processor, inputs, params)
            yield [score_row(s, out.completions[j * n:(j + 1) * n], out.truncated[j * n:(j + 1) * n].tolist(),
                             strict=cfg.strict_parse, keep_completions=cfg.completions)
                   for j, s in enumerate(batch)]


def _load_model(cfg: CurriculumScoreConfig, name: str) -> tuple[Any, Any]:
    import torch

    from timegrpo.models.loading import load_policy

    model, processor = load_policy(name, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation)
    model.requires_grad_(False)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return model, processor


def teacher_path(cfg: CurriculumScoreConfig) -> Path:
    """Where the teacher's rows go: ``teacher_scores``, or ``scores.jsonl`` -> ``scores.teacher.jsonl``."""
    assert cfg.out is not None
    return Path(cfg.teacher_scores) if cfg.teacher_scores else Path(cfg.out).with_suffix(".teacher.jsonl")


def video_sampling(cfg: CurriculumScoreConfig, name: str) -> Any:
    """The recipe-style video sampling of ``cfg.video`` with the patch size of model ``name`` (read from its
    config, before any weight is loaded)."""
    from transformers import AutoConfig

    from timegrpo.data.video import VideoSampling

    patch = int(getattr(getattr(AutoConfig.from_pretrained(name), "vision_config", None), "patch_size", 14))
    return VideoSampling(**cfg.video.data_config().video_sampling_kwargs(), image_patch_size=patch)


def score_pass(cfg: CurriculumScoreConfig, name: str, n: int, samples: Sequence[Sample], out: Path,
               add: dict[str, dict[str, Any]] | None = None, settings: dict[str, Any] | None = None
               ) -> tuple[int, int]:
    """Score the samples not yet in ``out`` with model ``name`` (``n`` answers each; the model is loaded only
    when some are left), each row extended by ``add[qid]``, ``settings`` added to the fingerprint; returns
    (rows there before, rows written)."""
    import gc
    import sys

    import torch
    from tqdm import tqdm

    from timegrpo.data.source import video_source
    from timegrpo.evaluate.engine import memo_videos

    video = video_sampling(cfg, name)
    done = prepare_out(out, {**fingerprint(cfg, video, name, n), **(settings or {})}, cfg.overwrite)
    pending = [s for s in samples if s.qid not in done]
    say(f"{out.name}: {len(samples)} samples: {len(samples) - len(pending)} already scored, {len(pending)} to do "
        f"(n = {n}, {name})")
    if not pending:
        return len(samples), 0
    model, processor = _load_model(cfg, name)
    torch.manual_seed(cfg.sampling.seed)
    videos = memo_videos(video_source(video, cache_dir=cfg.frame_cache))
    bar = tqdm(total=len(pending), unit="query", desc="score", file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    with PredictionWriter(out) as writer:
        for rows in iter_scores(model, processor, pending, videos, cfg, n):
            writer.write([{**r, **(add or {}).get(r["qid"], {})} for r in rows])
            bar.update(len(rows))
    bar.close()
    del model, processor, videos
    gc.collect()  # the next pass (or a training run) gets the device memory back
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return len(samples) - len(pending), len(pending)


def run_score(cfg: CurriculumScoreConfig) -> dict[str, Any]:
    """The whole ``timegrpo curriculum score`` run (see the module docstring); returns a summary. With a
    ``teacher``, the teacher's pass runs first (rows in :func:`teacher_path`), then the model's rows carry the
    teacher's IoUs as ``teacher_ious``."""
    import os

    from timegrpo.data.formats import load_annotations

    require(cfg, "model", "annotations", "out")
    assert cfg.annotations is not None and cfg.out is not None and cfg.model is not None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise EvalError("timegrpo curriculum score runs in one process; launch it without accelerate/torchrun")
    samples, _ = load_annotations(cfg.annotations, cfg.format, on_bad=cfg.on_bad, durations=cfg.durations,
                                  video_dir=cfg.videos)
    samples = samples[: cfg.limit] if cfg.limit is not None else samples
    bare = [s.qid for s in samples if not s.windows]
    if bare:
        raise EvalError(f"{len(bare)} samples of {cfg.annotations} have no ground-truth window (first: qid "
                        f"{bare[0]}); scoring needs one")
    add, settings = None, None
    summary: dict[str, Any] = {}
    if cfg.teacher:
        settings = {"teacher": model_id(cfg.teacher), "teacher_n": cfg.teacher_n}
        before, scored = score_pass(cfg, cfg.teacher, cfg.teacher_n, samples, teacher_path(cfg))
        rows, _ = read_predictions(teacher_path(cfg))
        add = {str(r["qid"]): {"teacher_ious": r["ious"]} for r in rows}
        summary["teacher"] = {"out": str(teacher_path(cfg)), "n_done_before": before, "n_scored": scored,
                              "n": cfg.teacher_n}
    before, scored = score_pass(cfg, cfg.model, cfg.n, samples, Path(cfg.out), add, settings)
    return {"out": str(cfg.out), "n_samples": len(samples), "n_done_before": before, "n_scored": scored,
            "n": cfg.n, **summary}
