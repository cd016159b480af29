"""``timegrpo curriculum score | select | timerft | tvdf``: the curriculum stages, each writing an auditable file.

``score``: the options of :class:`timegrpo.curriculum.config.CurriculumScoreConfig`, the run
:func:`timegrpo.curriculum.score.run_score` (n answers per query through the training rollout, resumable).
``select``: :class:`timegrpo.curriculum.config.SelectConfig`, :func:`timegrpo.curriculum.select.run_select`
(a registered selector over a scored pool -> moment_detr jsonl with the scores in ``meta``).
``timerft`` / ``tvdf``: a recipe (:class:`timegrpo.config.RecipeConfig`, its ``curriculum`` section; the strategy
defaults to the command's name), the run :func:`timegrpo.curriculum.rounds.run_rounds` (score -> select -> train,
per round, resumable).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from timegrpo.config import RecipeConfig
from timegrpo.config.core import add_command, from_args
from timegrpo.curriculum.config import CurriculumScoreConfig, SelectConfig


def _score(args: argparse.Namespace) -> int:
    from timegrpo.curriculum.score import run_score

    cfg = from_args(CurriculumScoreConfig, args)
    if cfg is not None:
        print(json.dumps(run_score(cfg)))
    return 0


def _select(args: argparse.Namespace) -> int:
    from timegrpo.curriculum.tvdf import run_selector

    cfg = from_args(SelectConfig, args)
    if cfg is not None:
        print(json.dumps(run_selector(cfg)))
    return 0


def _rounds(strategy: str) -> Any:
    """The handler of a rounds command whose ``curriculum.strategy`` defaults to ``strategy`` (a recipe or
    ``--curriculum.strategy`` may name another)."""
    def run(args: argparse.Namespace) -> int:
        from timegrpo.curriculum.rounds import run_rounds

        cfg = from_args(RecipeConfig, args, prefer_section="train", defaults={"curriculum.strategy": strategy})
        if cfg is not None:
            print(json.dumps(run_rounds(cfg)))
        return 0

    return run


def _guard(handler: Any) -> Any:
    """``handler`` with input problems (a bad file, missing scores, an unreadable video) as one line, exit 2."""
    def run(args: argparse.Namespace) -> int:
        from timegrpo.curriculum.score import say
        from timegrpo.data.anomalies import AnnotationError
        from timegrpo.data.video import VideoError
        from timegrpo.evaluate.config import EvalError

        try:
            return handler(args)
        except (EvalError, AnnotationError, VideoError, FileNotFoundError, ValueError) as err:
            say(f"error: {err}")
            return 2

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("curriculum", help="curriculum stages: score a pool, select from it",
                                   description="TimeRFT and VideoTG-R1 data stages; each writes a file.")
    sub = parser.add_subparsers(dest="curriculum_command", metavar="STAGE", required=True)
    add_command(sub, "score", CurriculumScoreConfig, _guard(_score),
                help="n answers per query from a model -> scores jsonl (qid, ious), resumable",
                description="Answer every query n times through the training rollout code (vision tower once per "
                "video) and write one row per sample: qid, the n IoUs, and the completions with --completions.")
    add_command(sub, "select", SelectConfig, _guard(_select),
                help="a registered selector over a scored pool -> moment_detr annotation file",
                description="Select k samples of a scored pool with a selector of timegrpo.curriculum.select "
                "(timerft, timerft_refilter, dea_stratified) or timegrpo.curriculum.tvdf (tvdf, tvdf_even, "
                "tvdf_buckets, tvdf_gaussian: scores with teacher_ious) and write them as moment_detr jsonl, the "
                "score fields in meta, with a summary in <out>.summary.json.")
    add_command(sub, "timerft", RecipeConfig, _guard(_rounds("timerft")), config_required=True,
                help="TimeRFT data rounds: score -> select -> train one epoch, repeated (resumable)",
                description="Run the recipe's data rounds (its curriculum section; timegrpo.curriculum.rounds): "
                "score the pool with the base model, select k (timerft), train one epoch; each later round "
                "re-scores the training set with the current model, refilters (timerft_refilter) and trains on from "
                "the last checkpoint. Files per round in <out>/round_N/; a rerun resumes. Multi-GPU training: "
                "--curriculum.launch 'accelerate launch --config_file launch/zero3_offload.yaml'.")
    add_command(sub, "tvdf", RecipeConfig, _guard(_rounds("tvdf")), config_required=True,
                help="Video-OPD TVDF rounds: score the pool (student and teacher) -> tvdf select -> train, repeated",
                description="The data rounds of timegrpo.curriculum.rounds with a teacher-guided strategy (tvdf by "
                "default; tvdf_even, tvdf_buckets, tvdf_gaussian with --curriculum.strategy): every round the "
                "current student scores the whole pool, the recipe's teacher once (teacher_ious), the reliable "
                "samples where the teacher beats the student most are selected, and the recipe trains on them from "
                "the last checkpoint. Files per round in <out>/round_N/; a rerun resumes.")
