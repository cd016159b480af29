"""``timegrpo bench``: time GRPO steps phase by phase, optionally side by side with TRL (see :mod:`timegrpo.bench`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timegrpo.bench import SUITES
from timegrpo.bench.workload import BenchConfig
from timegrpo.config import core

logger = logging.getLogger("timegrpo.bench")


@dataclass
class BenchOptions:
    """``timegrpo bench``: the run's outputs and machine settings, and one ``workload`` (bare names work:
    ``--frames 8``, ``--vs-trl``). With ``--suite`` the workload options given override each preset's."""

    suite: str | None = core.opt(None, f"run a built-in list of workloads: {', '.join(SUITES)}")
    threads: int = core.opt(1, "torch CPU threads (1: on a shared machine more threads per process oversubscribe "
                               "the cores and step times swing several-fold; 0 = torch's own choice)")
    json: bool = core.opt(False, "print the result as one JSON object on stdout")
    json_out: str | None = core.opt(None, "also write the JSON result to this file")
    markdown: str | None = core.opt(None, "write a BENCHMARKS.md-style report to this file")
    real_videos: str | None = core.opt(None, "folder of real videos for the decode-vs-cache figures (Time-R1 "
                                             "sampling)")
    workdir: str | None = core.opt(None, "where temporary models, videos and caches go (default: $TMPDIR)")
    peak_tflops: float | None = core.opt(None, "device peak TFLOP/s for model FLOPs utilisation (default: known "
                                               "GPUs' bf16 peak)")
    method: str = core.opt("grpo", "grpo: one GRPO step phase by phase (with --vs-trl, beside TRL's); opd: a "
                                   "Video-OPD step (G 1, a frozen teacher) next to a GRPO step on the same prompts "
                                   "(timegrpo.bench.opd)")
    teacher: str | None = core.opt(None, "--method opd: the teacher's folder (same tokenizer; default: the "
                                         "benchmarked model itself, a teacher of the student's size)")
    workload: BenchConfig = core.section(BenchConfig, "the work of one benchmark")

    def __post_init__(self) -> None:
        if self.suite is not None:
            core.check_choice("suite", self.suite, tuple(SUITES))
        core.check_choice("method", self.method, ("grpo", "opd"))
        core.check(self.method == "opd" or self.teacher is None, "teacher", "is for --method opd only")
        core.check(self.method == "grpo" or not self.workload.vs_trl, "workload.vs_trl",
                   "compares GRPO with TRL's trainer; leave it out with --method opd")


def register(subparsers: argparse._SubParsersAction) -> None:
    from timegrpo import bench

    core.add_command(subparsers, "bench", BenchOptions, run,
                     help="time GRPO steps phase by phase, optionally side by side with TRL (or "
                     "Video-OPD's beside GRPO's: --method opd)", description=bench.__doc__)


def configs_from_args(args: argparse.Namespace) -> tuple[BenchOptions | None, list[BenchConfig]]:
    """The options and the workloads to run (the suite's, each overridden by the workload options given);
    ``(None, [])`` after ``--print-config``."""
    from timegrpo.bench import workloads

    opts = core.from_args(BenchOptions, args)
    if opts is None:
        return None, []
    given = {key.split(".", 1)[1] for key in core.given_keys(BenchOptions, args) if key.startswith("workload.")}
    return opts, workloads(opts.suite, opts.workload, given)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    logger.setLevel(logging.INFO)
    opts, configs = configs_from_args(args)
    if opts is None:
        return 0
    if opts.method == "opd":
        return _run_opd(opts, configs)
    from timegrpo.bench import run_workloads
    from timegrpo.bench.report import write_markdown

    results = run_workloads(configs, threads=opts.threads, workdir=opts.workdir, peak_tflops=opts.peak_tflops,
                            real_videos=opts.real_videos)
    _write_json(opts, results)
    if opts.markdown:
        write_markdown(results, opts.markdown, argv=sys.argv, suite=opts.suite,
                       description=SUITES[opts.suite][0] if opts.suite else "")
        logger.info("wrote %s", opts.markdown)
    return 0


def _run_opd(opts: BenchOptions, configs: list[BenchConfig]) -> int:
    """``--method opd``: :func:`timegrpo.bench.opd.run_opd_workloads`, the same outputs as a GRPO bench."""
    from timegrpo.bench.opd import run_opd_workloads, write_opd_markdown

    results = run_opd_workloads(configs, threads=opts.threads, teacher=opts.teacher, workdir=opts.workdir)
    _write_json(opts, results)
    if opts.markdown:
        write_opd_markdown(results, opts.markdown, sys.argv)
    return 0


def _write_json(opts: BenchOptions, results: list[dict[str, Any]]) -> None:
    """The results as JSON (one workload: its object; several: the suite) on stdout (``--json``) and/or in
    ``--json-out``."""
    out: dict[str, Any] = results[0] if len(results) == 1 else {"suite": opts.suite, "workloads": results}
    text = json.dumps(out, indent=2, default=float)
    if opts.json:
        print(text)
    if opts.json_out:
        Path(opts.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.json_out).write_text(text + "\n", encoding="utf-8")
