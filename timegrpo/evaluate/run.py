"""A whole ``timegrpo eval`` run: batch inference with a real model over an annotation file, then metrics and plots.

What a run writes into ``out``:

* ``predictions.jsonl``: one line per sample as it is predicted (qid, vid, query, duration, the raw
  ``completion``, ``pred_relevant_windows`` ``[[s, e, 1.0]]``, ``iou``, ``truncated``), flushed line by line.
* ``eval_config.json``: the exact settings (model, every sampling parameter, video sampling, template, parse
  mode, annotations, versions, command line).
* ``metrics.json`` / ``metrics.md``: R1@{0.3,0.5,0.7}, mIoU, ``format_rate``, ``unparsed``, ``n``,
  ``n_truncated``, ``skipped`` (by kind) and the benchmark's own keys, e.g. the official ``MR-...`` keys for
  QVHighlights annotations (:func:`timegrpo.evaluate.score.eval_metrics`).
* ``plots/``: IoU histogram, R1 by ground-truth length, predicted vs true centres (:mod:`timegrpo.evaluate.plots`).
* ``skipped.jsonl``: the samples left out under ``on_bad: skip`` (qid, kind, detail).

Resuming: a rerun with the same ``out`` skips the qids already in ``predictions.jsonl`` (a partially written
last line from a kill is dropped, with a message); it refuses to mix settings (``overwrite`` starts over).
Data parallel: under ``accelerate launch`` every rank takes ``shard(pending, rank, world)``, writes
``parts/predictions.rank{R}.jsonl``, and rank 0 merges them in annotation order and computes the metrics.
Decoding is greedy unless ``do_sample``, with every parameter explicit and none taken from the checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timegrpo.evaluate.config import EvalConfig, EvalError, require
from timegrpo.evaluate.predictions import read_predictions, write_atomic

#: eval_config.json sections that must match for a rerun to reuse existing predictions.
FINGERPRINT = ("model", "sampling", "video", "template", "parse", "annotations")


@dataclass
class Dist:
    """Where this process sits in a data-parallel run (``accelerate launch``), or a single process."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    device: Any = "cpu"

    @classmethod
    def from_accelerate(cls) -> Dist:
        """The launcher's ranks (``accelerate launch`` or ``torchrun``; gloo on a machine without CUDA)."""
        import torch
        from accelerate import PartialState

        state = PartialState(cpu=not torch.cuda.is_available())
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched != state.num_processes:
            raise EvalError(f"launched as {launched} processes but accelerate sees {state.num_processes}; "
                            "launch with `accelerate launch --multi_gpu` (GPUs) or `torchrun` (CPU)")
        return cls(state.process_index, state.num_processes, state.wait_for_everyone, state.device)

    @property
    def main(self) -> bool:
        return self.rank == 0


def say(msg: str) -> None:
    sys.stderr.write(f"timegrpo eval: {msg}\n")
    sys.stderr.flush()


# ----------------------------------------------------------------------------------------------- settings


def video_sampling(cfg: EvalConfig, patch_size: int) -> Any:
    """The :class:`~timegrpo.data.video.VideoSampling` of ``cfg.video``, validated as the training config is."""
    from timegrpo.data.video import VideoSampling

    return VideoSampling(**cfg.video.data_config().video_sampling_kwargs(), image_patch_size=patch_size)


def resolve_template(cfg: EvalConfig) -> Any:
    """The prompt template; ``query_as_is`` keeps the query's case and final period (Time-R1's eval prompt)."""
    from timegrpo.prompts import get_template

    tpl = get_template(cfg.template)
    return dataclasses.replace(tpl, normalize=False) if cfg.query_as_is else tpl


def _model_path(name: str) -> str:
    return str(Path(name).resolve()) if Path(name).exists() else name


def _versions(backend: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import timegrpo

    out = {"timegrpo": timegrpo.__version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "accelerate", "qwen-vl-utils", "decord", "tokenizers",
                *(("vllm",) if backend == "vllm" else ())):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def eval_config(cfg: EvalConfig, sampling: Any, video: Any, template: Any, report: Any,
                n_selected: int, world: int) -> dict[str, Any]:
    """eval_config.json: everything that decides the predictions, plus versions and the command line."""
    assert cfg.model is not None and cfg.annotations is not None
    return {
        "model": {"path": _model_path(cfg.model), "backend": cfg.backend, "dtype": cfg.dtype,
                  "attn_implementation": cfg.attn_implementation},
        "sampling": {**dataclasses.asdict(sampling), "seed": cfg.sampling.seed},
        "video": dataclasses.asdict(video),
        "template": {"name": cfg.template, **dataclasses.asdict(template)},
        "parse": {"strict": cfg.strict_parse},
        "annotations": {"path": str(Path(cfg.annotations).resolve()), "format": report.format,
                        "on_bad": cfg.on_bad, "durations": cfg.durations,
                        "videos": None if cfg.videos is None else str(Path(cfg.videos).resolve())},
        "selection": {"limit": cfg.limit, "n_selected": n_selected, "records": report.records,
                      "kept": report.kept},
        "batch_size": cfg.batch_size,
        "world_size": world,
        "frame_cache": cfg.frame_cache,
        "versions": _versions(cfg.backend),
        "command": sys.argv,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def check_resume(out: Path, config: dict[str, Any]) -> None:
    """Raise :class:`EvalError` when ``out`` holds predictions made with other settings (see FINGERPRINT)."""
    old_path = out / "eval_config.json"
    has_preds = (out / "predictions.jsonl").is_file() or any((out / "parts").glob("predictions.rank*.jsonl"))
    if not has_preds or not old_path.is_file():
        return
    old = json.loads(old_path.read_text(encoding="utf-8"))
    diffs = []
    for section in FINGERPRINT:
        a, b = old.get(section, {}), config[section]
        diffs += [f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
                  if a.get(k) != b.get(k)]
    if diffs:
        raise EvalError(f"{out} holds predictions made with other settings ({'; '.join(diffs)}); use another "
                        "--out, or --overwrite to discard them")


def _write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def _patch_size(model: str) -> int:
    """The vision patch size (14 for Qwen2/2.5-VL, 16 for Qwen3-VL) from the model's config."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(model)
    except OSError as err:
        raise EvalError(f"cannot read a model config from {model!r}: {err}") from None
    return int(getattr(getattr(cfg, "vision_config", None), "patch_size", 14))


# ----------------------------------------------------------------------------------------------- the folder


def _clean(out: Path) -> None:
    import shutil

    for name in ("predictions.jsonl", "metrics.json", "metrics.md", "skipped.jsonl", "eval_config.json"):
        (out / name).unlink(missing_ok=True)
    for name in ("parts", "plots"):
        shutil.rmtree(out / name, ignore_errors=True)


def prepare_out(out: Path, config: dict[str, Any], dist: Dist, overwrite: bool) -> int:
    """Rank 0 readies ``out`` (clean under ``overwrite``, resume check, eval_config.json, stale skip parts);
    then each rank cuts a partially written last line off the file(s) it owns. Returns lines dropped."""
    parts = out / "parts"
    dropped = 0
    if not overwrite:
        check_resume(out, config)  # read-only, on every rank: all ranks stop together
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            _clean(out)
        _write_json(out / "eval_config.json", config)
        for p in parts.glob("skipped.rank*.jsonl"):
            p.unlink()
    dist.barrier()
    mine = [parts / f"predictions.rank{dist.rank}.jsonl"]
    if dist.main:
        stale = [p for p in parts.glob("predictions.rank*.jsonl") if int(p.stem.split("rank")[1]) >= dist.world]
        mine += [out / "predictions.jsonl", *stale]
    for path in mine:
        n = read_predictions(path, repair=True)[1]
        if n:
            say(f"{path} ended with a partially written line (an interrupted run): dropped it; "
                "its sample is predicted again")
        dropped += n
    dist.barrier()
    return dropped


def done_qids(out: Path) -> set[str]:
    """qids with a prediction in ``out/predictions.jsonl`` or any part file."""
    files = [out / "predictions.jsonl", *sorted((out / "parts").glob("predictions.rank*.jsonl"))]
    return {str(r["qid"]) for f in files for r in read_predictions(f)[0]}


def _write_skipped(path: Path, skipped: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in skipped))


# ----------------------------------------------------------------------------------------------- the run


def predict(cfg: EvalConfig, dist: Dist, mine: list[Any], video: Any, template: Any, sampling: Any,
            target: Path) -> list[Any]:
    """Predict ``mine`` into ``target`` batch by batch with a progress bar; returns the skipped samples."""
    import torch
    from tqdm import tqdm

    from timegrpo.data.source import video_source
    from timegrpo.evaluate import engine
    from timegrpo.evaluate.backends import BACKENDS
    from timegrpo.evaluate.predictions import PredictionWriter

    videos = engine.memo_videos(video_source(video, cache_dir=cfg.frame_cache))
    backend = BACKENDS.get(cfg.backend)(cfg, world=dist.world, device=dist.device, template=template,
                                        sampling=sampling, video=video)
    torch.manual_seed(cfg.sampling.seed + dist.rank)
    skipped: list[Any] = []
    bar = tqdm(total=len(mine), unit="query", desc=f"eval rank {dist.rank}" if dist.world > 1 else "eval",
               disable=not dist.main, dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
    with backend.context(), PredictionWriter(target) as writer:
        for batch in engine.predict_batches(mine, videos, backend.complete, batch_size=cfg.batch_size,
                                            on_bad=cfg.on_bad, strict=cfg.strict_parse):
            writer.write(batch.records)
            skipped += batch.skipped
            bar.update(len(batch.records) + len(batch.skipped))
            if skipped:
                bar.set_postfix(skipped=len(skipped))
    bar.close()
    return skipped


def _gather_parts(out: Path, selected: list[Any], report: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Merge the ranks' part files into predictions.jsonl and skipped.jsonl (the records the annotation reader
    dropped first, then the samples whose video failed); returns (records, skipped)."""
    from timegrpo.evaluate.engine import Skipped
    from timegrpo.evaluate.predictions import merge_predictions

    parts = sorted((out / "parts").glob("predictions.rank*.jsonl"))
    target = out / "predictions.jsonl"
    records = merge_predictions(target, parts, [s.qid for s in selected]) if parts else read_predictions(target)[0]
    skip_parts = sorted((out / "parts").glob("skipped.rank*.jsonl"))
    sources = skip_parts or [out / "skipped.jsonl"] * (out / "skipped.jsonl").is_file()  # a finished run, rescored
    videos = [s for p in sources for s in map(json.loads, p.read_text(encoding="utf-8").splitlines())
              if s.get("stage", "video") == "video"]
    annotations = [{"qid": d["qid"], "kind": d["kind"], "detail": f"{d['where']}: {d['detail']}", "stage": "annotation"}
                   for d in report.dropped_records]
    skipped = annotations + videos
    _write_skipped(out / "skipped.jsonl", [Skipped(**s) for s in skipped])
    for p in skip_parts:
        p.unlink()
    if (out / "parts").is_dir() and not any((out / "parts").iterdir()):
        (out / "parts").rmdir()
    return records, skipped


def finish(cfg: EvalConfig, out: Path, selected: list[Any], report: Any, template: Any,
           run_info: dict[str, Any]) -> dict[str, Any]:
    """Rank 0, after every rank is done: merge parts, then metrics.json, metrics.md, skipped.jsonl, plots."""
    from collections import Counter

    from timegrpo.evaluate.benchmarks import detect_benchmark
    from timegrpo.evaluate.plots import write_plots
    from timegrpo.evaluate.score import eval_metrics, markdown_table

    records, skipped = _gather_parts(out, selected, report)
    kinds = Counter(s["kind"] for s in skipped)
    benchmark = detect_benchmark(selected, report.format)
    metrics, result = eval_metrics(selected, records, benchmark=benchmark, think=template.think, skipped=dict(kinds))
    metrics["annotations"] = {k: v for k, v in report.to_dict().items() if k != "examples"}
    metrics["run"] = run_info
    _write_json(out / "metrics.json", metrics)
    title = f"{Path(str(cfg.model)).name} on {Path(str(cfg.annotations)).name} ({benchmark}, {cfg.template})"
    table = markdown_table(result, title)
    write_atomic(out / "metrics.md", table + "\n")
    by_qid = {str(r["qid"]): r for r in records}
    write_plots([by_qid[s.qid] for s in selected if s.qid in by_qid], [s for s in selected if s.qid in by_qid],
                out / "plots")
    sys.stdout.write(table + "\n")
    if kinds:
        say(f"{sum(kinds.values())} samples left out: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + f" (see {out / 'skipped.jsonl'} and metrics.json)")
    return metrics


def run_eval(cfg: EvalConfig, dist: Dist | None = None) -> dict[str, Any] | None:
    """The whole ``timegrpo eval`` run (see the module docstring); rank 0 returns metrics.json's content."""
    from timegrpo.data.formats import load_annotations
    from timegrpo.evaluate.predictions import shard

    require(cfg, "model", "annotations", "out")
    assert cfg.model is not None and cfg.annotations is not None and cfg.out is not None
    dist = dist or Dist.from_accelerate()
    out = Path(cfg.out)
    samples, report = load_annotations(cfg.annotations, cfg.format, on_bad=cfg.on_bad,
                                       durations=cfg.durations, video_dir=cfg.videos)
    selected = samples[: cfg.limit] if cfg.limit is not None else samples
    sampling = cfg.sampling.params()
    video, template = video_sampling(cfg, _patch_size(cfg.model)), resolve_template(cfg)
    config = eval_config(cfg, sampling, video, template, report, len(selected), dist.world)
    dropped = prepare_out(out, config, dist, cfg.overwrite)
    done = done_qids(out)
    pending = [s for s in selected if s.qid not in done]
    dist.barrier()  # every rank has read the same done set before any rank writes
    mine = shard(pending, dist.rank, dist.world)
    if dist.main:
        say(f"{len(selected)} samples: {len(selected) - len(pending)} already predicted, {len(pending)} to do"
            + (f" over {dist.world} ranks" if dist.world > 1 else ""))
    target = out / "predictions.jsonl" if dist.world == 1 else out / "parts" / f"predictions.rank{dist.rank}.jsonl"
    skipped = predict(cfg, dist, mine, video, template, sampling, target) if mine else []
    _write_skipped(out / "parts" / f"skipped.rank{dist.rank}.jsonl", skipped)
    dist.barrier()
    if not dist.main:
        return None
    run_info = {"n_selected": len(selected), "n_done_before": len(selected) - len(pending),
                "n_to_do": len(pending), "dropped_partial_lines": dropped, "world_size": dist.world}
    return finish(cfg, out, selected, report, template, run_info)
