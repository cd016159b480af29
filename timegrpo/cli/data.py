"""``timegrpo data inspect | convert | synth | frames``: look at, convert and generate grounding data.

* ``inspect FILE``: format, sample count, anomaly counts, what the policy dropped/clipped, duration and window
  statistics (``--json``: one JSON object with ``format``, ``samples``, ``anomalies``, ...). Under the default
  ``--on-bad error`` a file with bad records still prints its counts, then the error, and exits 1.
* ``convert FILE --to moment_detr|hf --out PATH``: moment_detr jsonl, or a ``datasets`` folder
  (``save_to_disk``; ``datasets.load_from_disk`` reads it, ``push_to_hub`` publishes it).
* ``synth --out DIR --n N --seed S``: the synthetic mp4 benchmark (:mod:`timegrpo.data.synthetic`).
* ``frames VIDEO``: sample a video as the model sees it and print every frame's time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from timegrpo.config import core
from timegrpo.data.video import VideoSampling


def _add_reading_args(p: argparse.ArgumentParser, default_policy: str = "error") -> None:
    p.add_argument("file", help="annotation file")
    p.add_argument("--format", default=None, help="reader name (default: detected from the file)")
    p.add_argument("--durations", default=None, help="durations file (Charades csv or json) for formats without them")
    p.add_argument("--video-dir", default=None, help="folder of the videos (missing files are counted)")
    p.add_argument("--on-bad", default=default_policy, choices=["error", "skip", "clip"],
                   help="what to do with bad records: error (stop, default), skip (drop), clip (clamp windows)")
    p.add_argument("--drop-duplicates", action="store_true", help="also drop exact duplicate records")


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect, convert and generate grounding data",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("inspect", help="format, counts, anomalies and statistics of an annotation file")
    _add_reading_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_inspect)

    p = sub.add_parser("convert", help="convert annotations to moment_detr jsonl or a Hugging Face dataset")
    _add_reading_args(p)
    p.add_argument("--to", required=True, choices=["moment_detr", "hf"], help="output format")
    p.add_argument("--out", required=True, help="output jsonl (moment_detr) or folder (hf)")
    p.set_defaults(func=run_convert)

    from timegrpo.data.synthetic import SynthConfig

    p = core.add_command(sub, "synth", SynthConfig, run_synth, help="write the synthetic mp4 grounding benchmark")
    p.add_argument("--out", required=True, help="output folder")

    from timegrpo.detr.cli import add_synth_features_parser  # the clip-feature benchmark of GIRL-DETR

    add_synth_features_parser(sub)

    p = core.add_command(sub, "frames", FramesOptions, run_frames,
                         help="sample a video through qwen-vl-utils and print each frame's time")
    p.add_argument("video", help="video file")


@dataclass
class FramesOptions:
    """``timegrpo data frames VIDEO``: how to sample (the ``sampling`` fields, bare names work: ``--fps 1``)."""

    video_start: float | None = core.opt(None, "clip start in the file (s)")
    video_end: float | None = core.opt(None, "clip end in the file (s)")
    duration: float | None = core.opt(None, "annotated duration, to compare with the decoded")
    cache: str | None = core.opt(None, "frame cache folder")
    json: bool = core.opt(False, "print one JSON object")
    sampling: VideoSampling = core.section(VideoSampling, "frame sampling (fps 2 unless nframes is given)")


def _load(args: argparse.Namespace) -> Any:
    from timegrpo.data.formats import load_annotations

    return load_annotations(args.file, args.format, on_bad=args.on_bad, durations=args.durations,
                            video_dir=args.video_dir, drop_duplicates=args.drop_duplicates)


def _print_report(rep: dict[str, Any]) -> None:
    print(f"file      {rep['path']}")
    print(f"format    {rep['format']}   policy {rep['policy']}")
    if rep.get("error"):
        print(f"records   {rep['records']}   not loaded: bad records under --on-bad error (counts below)")
    else:
        print(f"records   {rep['records']}   kept {rep['kept']}   dropped {rep['dropped_total']}")
    for note in rep["notes"]:
        print(f"note      {note}")
    for key in ("anomalies", "dropped", "clipped"):
        if rep[key]:
            print(f"{key}:")
            for k, v in rep[key].items():
                print(f"  {k:<30} {v}")
    if not rep["anomalies"]:
        print("anomalies: none")


def _print_stats(st: dict[str, Any]) -> None:
    print(f"samples {st['samples']}  videos {st['videos']}  windows {st['windows']}  "
          f"multi-window {st['multi_window_samples']}  no window {st['samples_without_windows']}  "
          f"cropped {st['cropped_samples']}")
    for key, unit in (("duration", "s"), ("window_length", "s"), ("window_fraction", "")):
        d = st[key]
        if d:
            print(f"{key:<16} min {d['min']:.3f}{unit}  mean {d['mean']:.3f}{unit}  "
                  f"median {d['median']:.3f}{unit}  max {d['max']:.3f}{unit}")


def run_inspect(args: argparse.Namespace) -> int:
    from timegrpo.data.anomalies import AnnotationError
    from timegrpo.data.stats import summarize

    try:
        samples, report = _load(args)
    except AnnotationError as err:
        if err.report is None:
            raise
        out = err.report.to_dict() | {"samples": None, "error": str(err)}
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            _print_report(out)
        print(str(err), file=sys.stderr)
        return 1
    out = report.to_dict() | {"samples": len(samples), "stats": summarize(samples)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_report(out)
        _print_stats(out["stats"])
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from timegrpo.data.convert import save_hf, write_moment_detr

    samples, report = _load(args)
    path = write_moment_detr(samples, args.out) if args.to == "moment_detr" else save_hf(samples, args.out)
    print(f"wrote {len(samples)} samples ({args.to}) to {path}; read {report.records} records, "
          f"dropped {report.n_dropped} {report.dropped or ''}, clipped {sum(report.clipped.values())} windows")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from timegrpo.data.synthetic import SynthConfig, generate

    cfg = core.from_args(SynthConfig, args)
    if cfg is None:
        return 0
    t0 = time.perf_counter()
    summary = generate(cfg, args.out)
    splits = ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    print(f"wrote {cfg.n} videos ({splits}) to {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


def run_frames(args: argparse.Namespace) -> int:
    from timegrpo.data.video import FrameCache, sample_frames

    given = core.given_keys(FramesOptions, args)
    # nframes excludes fps: fps keeps its default of 2 only when nframes is not given
    only_nframes = "sampling.nframes" in given and "sampling.fps" not in given
    opts = core.from_args(FramesOptions, args, defaults={"sampling.fps": None} if only_nframes else None)
    if opts is None:
        return 0
    cache = FrameCache(opts.cache) if opts.cache else None
    t0 = time.perf_counter()
    vf = sample_frames(args.video, opts.sampling, video_start=opts.video_start, video_end=opts.video_end,
                       annotated_duration=opts.duration, cache=cache)
    out = {k: v for k, v in vf.__dict__.items() if k != "frames"}
    out |= {"frames_shape": list(vf.frames.shape), "seconds": time.perf_counter() - t0}
    if opts.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{vf.path}: {vf.frames.shape[0]} frames of {vf.frames.shape[3]}x{vf.frames.shape[2]}, "
          f"video fps {vf.video_fps:.4f}, sample fps {vf.sample_fps:.4f}, from cache {vf.from_cache}, "
          f"{out['seconds']:.2f} s")
    print(f"duration {vf.duration:.3f} s ({vf.duration_source}); decoded {vf.decoded_duration:.3f} s"
          + ("" if vf.duration_mismatch is None else
             f", annotated - decoded {vf.duration_mismatch:+.3f} s{' (MISMATCH)' if vf.mismatch else ''}"))
    print("timestamps (s): " + " ".join(f"{t:.3f}" for t in vf.timestamps))
    return 0
