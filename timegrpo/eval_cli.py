"""``timegrpo eval``: batch inference with a real model over an annotation file, then metrics and plots.

What a run writes into ``--out``:

* ``predictions.jsonl``: one line per sample as it is predicted (qid, vid, query, duration, the raw
  ``completion``, ``pred_relevant_windows`` ``[[s, e, 1.0]]``, ``iou``, ``truncated``), flushed line by line.
* ``eval_config.json``: the exact settings (model, every sampling parameter, video sampling, template, parse
  mode, annotations, versions, command line).
* ``metrics.json`` / ``metrics.md``: R1@{0.3,0.5,0.7}, mIoU, ``format_rate``, ``unparsed``, ``n``,
  ``n_truncated``, ``skipped`` (by kind) and, for QVHighlights annotations, the official ``MR-...`` keys
  (:func:`timegrpo.evaluate.eval_metrics`, through :mod:`timegrpo.score`).
* ``plots/``: IoU histogram, R1 by ground-truth length, predicted vs true centres (:mod:`timegrpo.plots`).
* ``skipped.jsonl``: the samples left out under ``--on-bad skip`` (qid, kind, detail).

Resuming: a rerun with the same ``--out`` skips the qids already in ``predictions.jsonl`` (a partially written
last line from a kill is dropped, with a message); it refuses to mix settings (``--overwrite`` starts over).
Data parallel: under ``accelerate launch`` every rank takes ``shard(pending, rank, world)``, writes
``parts/predictions.rank{R}.jsonl``, and rank 0 merges them in annotation order and computes the metrics.
Decoding is greedy unless ``--do-sample``, with every parameter explicit and none taken from the checkpoint.
"""

from __future__ import annotations

import argparse
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

#: The DataConfig fields that set video sampling, exposed as ``--fps``, ``--nframes``, ...
VIDEO_FIELDS = ("fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels",
                "prefer_duration")
#: eval_config.json sections that must match for a rerun to reuse existing predictions.
FINGERPRINT = ("model", "sampling", "video", "template", "parse", "annotations")


class EvalError(RuntimeError):
    """A problem with the run's inputs or output folder; the message says what to do."""


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


def _say(msg: str) -> None:
    sys.stderr.write(f"timegrpo eval: {msg}\n")
    sys.stderr.flush()


# ----------------------------------------------------------------------------------------------- settings


def video_sampling(args: argparse.Namespace, patch_size: int) -> Any:
    """The :class:`~timegrpo.data.video.VideoSampling` of ``args``, validated as the training config is."""
    from timegrpo.config import DataConfig
    from timegrpo.data.video import VideoSampling

    data = DataConfig(**{k: getattr(args, k) for k in VIDEO_FIELDS})
    return VideoSampling(**data.video_sampling_kwargs(), image_patch_size=patch_size)


def resolve_template(args: argparse.Namespace) -> Any:
    """The prompt template; ``--query-as-is`` keeps the query's case and final period (Time-R1's eval prompt)."""
    from timegrpo.prompts import get_template

    tpl = get_template(args.template)
    return dataclasses.replace(tpl, normalize=False) if args.query_as_is else tpl


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


def eval_config(args: argparse.Namespace, sampling: Any, video: Any, template: Any, report: Any,
                n_selected: int, world: int) -> dict[str, Any]:
    """eval_config.json: everything that decides the predictions, plus versions and the command line."""
    return {
        "model": {"path": _model_path(args.model), "backend": args.backend, "dtype": args.dtype,
                  "attn_implementation": args.attn_implementation},
        "sampling": {**dataclasses.asdict(sampling), "seed": args.seed},
        "video": dataclasses.asdict(video),
        "template": {"name": args.template, **dataclasses.asdict(template)},
        "parse": {"strict": args.strict_parse},
        "annotations": {"path": str(Path(args.annotations).resolve()), "format": report.format,
                        "on_bad": args.on_bad, "durations": args.durations,
                        "videos": None if args.videos is None else str(Path(args.videos).resolve())},
        "selection": {"limit": args.limit, "n_selected": n_selected, "records": report.records,
                      "kept": report.kept},
        "batch_size": args.batch_size,
        "world_size": world,
        "frame_cache": args.frame_cache,
        "versions": _versions(args.backend),
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


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- model


def load_backend(args: argparse.Namespace, dist: Dist, template: Any, sampling: Any, video: Any
                 ) -> tuple[Any, Any, Callable[[], Any]]:
    """``(completer, processor, context)``: ``context()`` is entered around the generation loop."""
    from contextlib import nullcontext

    from timegrpo import evaluate as ev

    if args.backend == "vllm":
        return _load_vllm(args, dist, template, sampling, video) + (nullcontext,)
    from timegrpo.models.loading import load_policy

    model, processor = load_policy(args.model, dtype=args.dtype, attn_implementation=args.attn_implementation)
    model.requires_grad_(False)
    model.to(dist.device).eval()
    complete = ev.hf_completer(model, processor, template, sampling)
    return complete, processor, lambda: ev.explicit_generation_config(model, sampling)


def vllm_max_model_len(args: argparse.Namespace, video: Any) -> int | None:
    """``--max-model-len``, else Time-R1's: the video's token budget + 4096 + the completion limit.

    >>> vllm_max_model_len(argparse.Namespace(max_model_len=None, max_new_tokens=1024),
    ...                    argparse.Namespace(total_pixels=3584 * 28 * 28, image_patch_size=14))
    8704
    """
    if args.max_model_len is not None or video.total_pixels is None:
        return args.max_model_len
    return video.total_pixels // (2 * video.image_patch_size) ** 2 + 4096 + args.max_new_tokens


def _load_vllm(args: argparse.Namespace, dist: Dist, template: Any, sampling: Any, video: Any
               ) -> tuple[Any, Any]:
    try:
        from vllm import LLM
    except ImportError as err:
        raise EvalError("--backend vllm needs vLLM (pip install 'timegrpo[vllm]'); or use --backend hf") from err
    if dist.world > 1:
        raise EvalError("--backend vllm runs in one process and spans GPUs with --tensor-parallel-size; "
                        "launch it without accelerate")
    from transformers import AutoProcessor, GenerationConfig

    from timegrpo import evaluate as ev

    processor = AutoProcessor.from_pretrained(args.model)
    try:
        eos = GenerationConfig.from_pretrained(args.model).eos_token_id
    except OSError:
        eos = None
    eos = eos if eos is not None else processor.tokenizer.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos)
    llm = LLM(model=args.model, dtype=args.dtype, tensor_parallel_size=args.tensor_parallel_size,
              gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=vllm_max_model_len(args, video),
              limit_mm_per_prompt={"image": 0, "video": 1}, seed=args.seed)
    return ev.vllm_completer(llm, processor, template, sampling, stop_token_ids=eos, seed=args.seed), processor


# ----------------------------------------------------------------------------------------------- run


def _patch_size(model: str) -> int:
    """The vision patch size (14 for Qwen2/2.5-VL, 16 for Qwen3-VL) from the model's config."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(model)
    except OSError as err:
        raise EvalError(f"cannot read a model config from {model!r}: {err}") from None
    return int(getattr(getattr(cfg, "vision_config", None), "patch_size", 14))


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
        _atomic_json(out / "eval_config.json", config)
        for p in parts.glob("skipped.rank*.jsonl"):
            p.unlink()
    dist.barrier()
    from timegrpo.evaluate import read_predictions

    mine = [parts / f"predictions.rank{dist.rank}.jsonl"]
    if dist.main:
        stale = [p for p in parts.glob("predictions.rank*.jsonl") if int(p.stem.split("rank")[1]) >= dist.world]
        mine += [out / "predictions.jsonl", *stale]
    for path in mine:
        n = read_predictions(path, repair=True)[1]
        if n:
            _say(f"{path} ended with a partially written line (an interrupted run): dropped it; "
                 "its sample is predicted again")
        dropped += n
    dist.barrier()
    return dropped


def done_qids(out: Path) -> set[str]:
    """qids with a prediction in ``out/predictions.jsonl`` or any part file."""
    from timegrpo.evaluate import read_predictions

    files = [out / "predictions.jsonl", *sorted((out / "parts").glob("predictions.rank*.jsonl"))]
    return {str(r["qid"]) for f in files for r in read_predictions(f)[0]}


def predict(args: argparse.Namespace, dist: Dist, mine: list[Any], video: Any, template: Any, sampling: Any,
            target: Path) -> list[Any]:
    """Predict ``mine`` into ``target`` batch by batch with a progress bar; returns the skipped samples."""
    import torch
    from tqdm import tqdm

    from timegrpo import evaluate as ev
    from timegrpo.data.source import video_source

    videos = ev.memo_videos(video_source(video, cache_dir=args.frame_cache))
    complete, _, context = load_backend(args, dist, template, sampling, video)
    torch.manual_seed(args.seed + dist.rank)
    skipped: list[Any] = []
    bar = tqdm(total=len(mine), unit="query", desc=f"eval rank {dist.rank}" if dist.world > 1 else "eval",
               disable=not dist.main, dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
    with context(), ev.PredictionWriter(target) as writer:
        for batch in ev.predict_batches(mine, videos, complete, batch_size=args.batch_size, on_bad=args.on_bad,
                                        strict=args.strict_parse):
            writer.write(batch.records)
            skipped += batch.skipped
            bar.update(len(batch.records) + len(batch.skipped))
            if skipped:
                bar.set_postfix(skipped=len(skipped))
    bar.close()
    return skipped


def _write_skipped(path: Path, skipped: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in skipped), encoding="utf-8")


def finish(args: argparse.Namespace, out: Path, selected: list[Any], report: Any, template: Any,
           run_info: dict[str, Any]) -> dict[str, Any]:
    """Rank 0, after every rank is done: merge parts, then metrics.json, metrics.md, skipped.jsonl, plots."""
    from collections import Counter

    from timegrpo import evaluate as ev
    from timegrpo.plots import write_plots
    from timegrpo.score import detect_benchmark, markdown_table

    parts = sorted((out / "parts").glob("predictions.rank*.jsonl"))
    target = out / "predictions.jsonl"
    records = (ev.merge_predictions(target, parts, [s.qid for s in selected]) if parts
               else ev.read_predictions(target)[0])
    skip_parts = sorted((out / "parts").glob("skipped.rank*.jsonl"))
    skipped = [json.loads(line) for p in skip_parts for line in p.read_text(encoding="utf-8").splitlines()]
    _write_skipped(out / "skipped.jsonl", [ev.Skipped(**s) for s in skipped])
    for p in skip_parts:
        p.unlink()
    if (out / "parts").is_dir() and not any((out / "parts").iterdir()):
        (out / "parts").rmdir()
    kinds = Counter(report.dropped) + Counter(s["kind"] for s in skipped)
    benchmark = detect_benchmark(selected, report.format)
    metrics, result = ev.eval_metrics(selected, records, benchmark=benchmark, think=template.think,
                                      skipped=dict(kinds))
    metrics["annotations"] = {k: v for k, v in report.to_dict().items() if k != "examples"}
    metrics["run"] = run_info
    _atomic_json(out / "metrics.json", metrics)
    title = f"{Path(args.model).name} on {Path(args.annotations).name} ({benchmark}, {args.template})"
    table = markdown_table(result, title)
    (out / "metrics.md").write_text(table + "\n", encoding="utf-8")
    by_qid = {str(r["qid"]): r for r in records}
    write_plots([by_qid[s.qid] for s in selected if s.qid in by_qid], [s for s in selected if s.qid in by_qid],
                out / "plots")
    sys.stdout.write(table + "\n")
    if kinds:
        _say(f"{sum(kinds.values())} samples left out: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
             + f" (see {out / 'skipped.jsonl'} and metrics.json)")
    return metrics


def run_eval(args: argparse.Namespace, dist: Dist | None = None) -> dict[str, Any] | None:
    """The whole ``timegrpo eval`` run (see the module docstring); rank 0 returns metrics.json's content."""
    from timegrpo import evaluate as ev
    from timegrpo.data.formats import load_annotations

    if args.limit is not None and args.limit < 1 or args.batch_size < 1:
        raise EvalError(f"--limit and --batch-size must be >= 1, got {args.limit} and {args.batch_size}")
    dist = dist or Dist.from_accelerate()
    out = Path(args.out)
    samples, report = load_annotations(args.annotations, args.format, on_bad=args.on_bad,
                                       durations=args.durations, video_dir=args.videos)
    selected = samples[: args.limit] if args.limit is not None else samples
    sampling = ev.sampling_params(args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
                                  top_p=args.top_p, top_k=args.top_k, repetition_penalty=args.repetition_penalty)
    video, template = video_sampling(args, _patch_size(args.model)), resolve_template(args)
    config = eval_config(args, sampling, video, template, report, len(selected), dist.world)
    dropped = prepare_out(out, config, dist, args.overwrite)
    done = done_qids(out)
    pending = [s for s in selected if s.qid not in done]
    dist.barrier()  # every rank has read the same done set before any rank writes
    mine = ev.shard(pending, dist.rank, dist.world)
    if dist.main:
        _say(f"{len(selected)} samples: {len(selected) - len(pending)} already predicted, {len(pending)} to do"
             + (f" over {dist.world} ranks" if dist.world > 1 else ""))
    target = out / "predictions.jsonl" if dist.world == 1 else out / "parts" / f"predictions.rank{dist.rank}.jsonl"
    skipped = predict(args, dist, mine, video, template, sampling, target) if mine else []
    _write_skipped(out / "parts" / f"skipped.rank{dist.rank}.jsonl", skipped)
    dist.barrier()
    if not dist.main:
        return None
    run_info = {"n_selected": len(selected), "n_done_before": len(selected) - len(pending),
                "n_to_do": len(pending), "dropped_partial_lines": dropped, "world_size": dist.world}
    return finish(args, out, selected, report, template, run_info)


def run(args: argparse.Namespace) -> int:
    from timegrpo.data.anomalies import AnnotationError
    from timegrpo.data.video import VideoError

    try:
        run_eval(args)
    except (EvalError, AnnotationError, VideoError, FileNotFoundError, ValueError) as err:
        _say(f"error: {err}")
        return 2
    return 0


# ----------------------------------------------------------------------------------------------- parser


def _int_or_none(text: str) -> int | None:
    return None if text.strip().lower() in ("none", "null", "") else int(text)


def _data_default(name: str) -> Any:
    from timegrpo.config.recipe import DataConfig

    return DataConfig.__dataclass_fields__[name].default


def _add_video_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video sampling (defaults: Time-R1's, as in training)")
    g.add_argument("--fps", type=float, default=_data_default("fps"), help="frames sampled per second (default 2)")
    g.add_argument("--nframes", type=_int_or_none, default=None, help="sample exactly this many frames instead of --fps")
    g.add_argument("--min-frames", type=int, default=None, help="fewest frames with --fps (qwen-vl-utils: 4)")
    g.add_argument("--max-frames", type=int, default=_data_default("max_frames"),
                   help="most frames with --fps (default 768)")
    g.add_argument("--min-pixels", type=int, default=_data_default("min_pixels"),
                   help="lower bound on pixels per frame (default 16*28*28 = 12544)")
    g.add_argument("--max-pixels", type=_int_or_none, default=None, help="upper bound on pixels per frame (default none)")
    g.add_argument("--total-pixels", type=_int_or_none, default=_data_default("total_pixels"),
                   help="pixel budget of a whole video (default 3584*28*28 = 2809856; none = no budget)")
    g.add_argument("--prefer-duration", default="annotation", choices=("annotation", "decoded"),
                   help="duration used when the annotation and the decoded video disagree")
    g.add_argument("--frame-cache", default=None, metavar="DIR", help="cache sampled frames here (reruns decode "
                   "nothing)")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding (greedy unless --do-sample; the checkpoint's generation_config is ignored)")
    g.add_argument("--max-new-tokens", type=int, default=1024, help="completion token limit (Time-R1 eval: 1024)")
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (with --do-sample)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (with --do-sample; 1 = off)")
    g.add_argument("--top-k", type=int, default=0, help="top-k sampling (with --do-sample; 0 = off)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="repetition penalty (1 = off)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (rank r uses seed + r)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="batch inference + metrics + plots for a model over an annotation file",
        description="Predict every sample of an annotation file with a Qwen-VL model (resumable, data parallel "
        "under accelerate launch), then write metrics.json, metrics.md and plots. See eval/README.md for the "
        "benchmark scripts.")
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--annotations", required=True, help="annotation file in any supported format")
    p.add_argument("--format", default=None, help="annotation format name (default: detected from the file)")
    p.add_argument("--videos", default=None, metavar="DIR", help="folder of the videos (default: the paths "
                   "written in the annotation file)")
    p.add_argument("--durations", default=None, help="durations file for formats without them (Charades-STA csv)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (a rerun resumes in it)")
    p.add_argument("--template", default="think", help="prompt template name: think, no_think or a registered one")
    p.add_argument("--query-as-is", action="store_true",
                   help="keep the query's case and final period (Time-R1's eval prompt; training lowercases)")
    p.add_argument("--strict-parse", action="store_true", help="parse answers exactly as Time-R1's code does")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per generate call (per GPU)")
    p.add_argument("--on-bad", default="error", choices=("error", "skip", "clip"),
                   help="bad annotation records and unreadable videos: stop (error), leave out and count (skip), "
                   "or clamp windows into [0, duration] and leave out the rest, counted (clip)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--overwrite", action="store_true", help="discard existing predictions in --out")
    p.add_argument("--backend", default="hf", choices=("hf", "vllm"), help="HF generate or vLLM (if installed)")
    p.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"),
                   help="weights dtype (auto: the checkpoint's)")
    p.add_argument("--attn-implementation", default=None, help="e.g. sdpa, flash_attention_2 (HF backend)")
    p.add_argument("--tensor-parallel-size", type=int, default=1, help="vLLM: GPUs per model")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM: share of GPU memory")
    p.add_argument("--max-model-len", type=int, default=None,
                   help="vLLM: context length (default: video token budget + 4096 + --max-new-tokens, as Time-R1)")
    _add_video_args(p)
    _add_sampling_args(p)
    p.set_defaults(func=run)
