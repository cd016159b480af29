"""``timegrpo bench --method opd``: the step time of Video-OPD next to GRPO's, on the same prompts.

Video-OPD (SPEC section 3) samples ONE completion per prompt and a frozen teacher scores the student's tokens in
one forward; GRPO samples ``G`` per prompt and scores them with the rewards. The paper reports an OPD step at about
20% of a GRPO step's wall time (:data:`PAPER_RATIO`). This runs both of timegrpo's trainers
(:class:`timegrpo.bench.sides.TimegrpoSide`) on one prepared workload (the same model folder, videos and frame
cache; unshuffled, so step ``s`` of each trains on the same ``P`` prompts), alternating step by step so that
drifts in machine load hit both alike:

* ``grpo``: the workload as given (``P`` prompts x ``G`` completions, ``beta``, ``loss_type``);
* ``opd``: ``method: opd`` on the same prompts, ``G = 1``, ``beta 0`` (no reference, as the paper), ``loss_type
  dapo`` and the teacher ``--teacher`` (default: the benchmarked model itself, loaded a second time: a teacher of
  the student's size; the paper's teacher is 4x larger (32B for an 8B student), so its forward weighs more there).

Both completions are fixed at ``completion_len`` tokens. The phases are those of :mod:`timegrpo.bench.sides`; the
teacher's forward, its video encoding (its own vision tower) included, is a ``logprob`` phase. Both sides time the
same module functions (the second one's wrappers around the first one's), so before each step a side drops what its
timer recorded during the other side's step.
Figures are medians over the timed steps; ``step_time_ratio`` is OPD / GRPO of the medians, the paired ratio the
median of the step-by-step ratios.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from timegrpo.bench.sides import GROUPS, TimegrpoSide, train_config
from timegrpo.bench.timing import machine_info, median
from timegrpo.bench.workload import BenchConfig, Workload, prepare

#: Video-OPD's reported cost of a step, as a share of a GRPO step's wall time.
PAPER_RATIO = 0.2


def opd_train_config(work: Workload, teacher: str) -> Any:
    """The recipe of the OPD side: the GRPO side's (:func:`timegrpo.bench.sides.train_config`) with ``method:
    opd``, one completion per prompt, no reference and the token-mean over the step."""
    cfg = train_config(work)
    train = replace(cfg.train, num_generations=1, beta=0.0, loss_type="dapo", teacher_model_name_or_path=teacher)
    return replace(cfg, method="opd", train=train)


class OPDSide(TimegrpoSide):
    """timegrpo's trainer with ``method: opd`` and a frozen teacher on the workload, instrumented as the GRPO side."""

    name = "opd"

    def __init__(self, work: Workload, teacher: str | None = None) -> None:
        from transformers import AutoProcessor

        from timegrpo.models.loading import check_same_tokenizer, load_frozen

        path = str(teacher or work.model_path)
        if teacher:
            check_same_tokenizer(AutoProcessor.from_pretrained(work.model_path), AutoProcessor.from_pretrained(path),
                                 student_name=str(work.model_path), teacher_name=path)
        model = load_frozen(path, dtype=work.config.resolved_dtype())
        super().__init__(work, tcfg=opd_train_config(work, path), teacher=model)
        self.cfg = copy.copy(work.config)  # the counts of this side: one completion per prompt
        self.cfg.num_generations = 1

    def step(self) -> dict[str, float]:
        self.timer.take()  # what the GRPO side's step left in this side's wrappers
        return super().step()


class GRPOSide(TimegrpoSide):
    """The GRPO side, dropping what the OPD side's step left in its timer before each step."""

    name = "grpo"

    def step(self) -> dict[str, float]:
        self.timer.take()
        return super().step()


def run_opd_workload(cfg: BenchConfig, *, teacher: str | None = None, workdir: str | None = None
                     ) -> dict[str, Any]:
    """Prepare the workload, alternate GRPO and OPD steps, summarise both; returns the ``--json`` object."""
    from timegrpo.bench.runner import summarize_side, warm_cache

    with tempfile.TemporaryDirectory(prefix="timegrpo-bench-opd-", dir=workdir) as tmp:
        t0, load_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
        work = prepare(cfg, Path(tmp))
        warm_cache(work)
        grpo = GRPOSide(work)
        opd = OPDSide(work, teacher)
        try:
            for _ in range(cfg.total_steps):
                grpo.step()
                opd.step()
            sides = {"grpo": summarize_side(grpo, cfg.warmup), "opd": summarize_side(opd, cfg.warmup)}
        finally:
            opd.close()
            grpo.close()
    pairs = [o / g for o, g in zip(sides["opd"]["step_times"], sides["grpo"]["step_times"], strict=True)]
    return {
        "workload": cfg.label or cfg.model_name(), "model": cfg.model_name(), "config": cfg.to_dict(),
        "teacher": teacher or "the benchmarked model (same size)", "machine": machine_info(),
        "load_average_start": load_start, "wall_s": time.perf_counter() - t0,
        "completions_per_step": {"grpo": cfg.prompts * cfg.num_generations, "opd": cfg.prompts},
        **sides,
        "step_time_ratio": sides["opd"]["step_time"] / sides["grpo"]["step_time"],
        "paired_step_time_ratio": median(pairs),
        "paper_step_time_ratio": PAPER_RATIO,
    }


def run_opd_workloads(configs: Sequence[BenchConfig], *, threads: int = 1, teacher: str | None = None,
                      workdir: str | None = None) -> list[dict[str, Any]]:
    """:func:`run_opd_workload` for each workload with ``threads`` torch threads (0 = torch's choice), each
    summary printed to stderr."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    results = []
    try:
        for cfg in configs:
            with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON
                results.append(run_opd_workload(cfg, teacher=teacher, workdir=workdir))
            print_opd_summary(results[-1], file=sys.stderr)
    finally:
        torch.set_num_threads(previous)
    return results


def _split(side: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in side["phase_split"].items())


def print_opd_summary(result: dict[str, Any], file: IO[str]) -> None:
    """Three lines: each method's step time and phases, and the ratio beside the paper's."""
    c = result["config"]
    print(f"== {result['workload']}: {c['prompts']} prompts, GRPO G {c['num_generations']} vs OPD G 1, "
          f"load {result['machine']['load_average']}", file=file)
    for name in ("grpo", "opd"):
        print(f"{name}: step {result[name]['step_time']:.3f} s [{_split(result[name])}]", file=file)
    print(f"OPD / GRPO step time: {result['step_time_ratio']:.3f} (paired {result['paired_step_time_ratio']:.3f}; "
          f"Video-OPD reports ~{PAPER_RATIO})", file=file)


def write_opd_markdown(results: Sequence[dict[str, Any]], path: str | Path, argv: Sequence[str]) -> None:
    """A short report: per workload the two step times, the ratio and the phase split of each method."""
    lines = ["# Video-OPD vs GRPO step time", "", "`" + " ".join(argv) + "`", "",
             "| workload | prompts | GRPO G | GRPO step (s) | OPD step (s) | OPD / GRPO | paired | paper |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["config"]
        lines.append(f"| {r['workload']} | {c['prompts']} | {c['num_generations']} | {r['grpo']['step_time']:.3f} | "
                     f"{r['opd']['step_time']:.3f} | {r['step_time_ratio']:.3f} | "
                     f"{r['paired_step_time_ratio']:.3f} | {PAPER_RATIO} |")
    for r in results:
        lines += ["", f"## {r['workload']} (teacher: {r['teacher']}; load {r['load_average_start']} -> "
                      f"{r['machine']['load_average']})", "", "| phase group | GRPO (s) | OPD (s) |", "|---|---|---|"]
        lines += [f"| {g} | {r['grpo']['phase_split'][g]:.3f} | {r['opd']['phase_split'][g]:.3f} |" for g in GROUPS]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
