"""The options of ``timegrpo curriculum score`` (:class:`CurriculumScoreConfig`) and ``select``
(:class:`SelectConfig`), on the one config mechanism (:mod:`timegrpo.config.core`).

The scorer's ``video`` section is eval's (:class:`timegrpo.evaluate.config.VideoOptions`: the recipe's own
video-sampling fields and defaults) and its ``sampling`` section is eval's decoding section with sampling on by
default (``n`` answers per query need ``do_sample``; greedy is allowed only with ``n = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from timegrpo.config.core import check, check_choice, opt, section
from timegrpo.evaluate.config import DTYPES, ON_BAD, SamplingOptions, VideoOptions


@dataclass
class ScoreSampling(SamplingOptions):
    """Section ``sampling``: how the ``n`` answers are drawn (sampled at temperature 1 unless told otherwise)."""

    do_sample: bool = opt(True, "Sample the n answers (greedy needs n = 1).")


@dataclass
class CurriculumScoreConfig:
    """``timegrpo curriculum score``: n answers per query from a model; one scores row (qid, ious) per sample."""

    model: str | None = opt(None, "Model folder or Hub id (required to run).")
    annotations: str | None = opt(None, "Annotation file in any supported format (required to run).")
    out: str | None = opt(None, "Scores jsonl to write (required; a rerun resumes it; settings beside it in "
                          "<name>.config.json).")
    n: int = opt(8, "Answers per query (the G of one rollout group).")
    teacher: str | None = opt(None, "A teacher model (Video-OPD's TVDF): it answers each query teacher_n times first, "
                              "and every row gets its IoUs as teacher_ious beside ious.")
    teacher_n: int = opt(4, "Answers per query from the teacher (Video-OPD: k_t = 4).")
    teacher_scores: str | None = opt(None, "The teacher's own rows (resumable; several runs over the same file "
                                     "can share it: the teacher does not change); default <out stem>.teacher.jsonl.")
    completions: bool = opt(False, "Also write the n completions of each sample.")
    format: str | None = opt(None, "Annotation format name (default: detected from the file).")
    videos: str | None = opt(None, "Folder of the videos (default: the paths written in the annotation file).")
    durations: str | None = opt(None, "Durations file for formats without them (Charades-STA csv).")
    on_bad: str = opt("error", "Bad annotation records: stop (error), leave out and count (skip), or clamp windows "
                      "into [0, duration] (clip).")
    template: str = opt("think", "Prompt template name: think, no_think or a registered one.")
    strict_parse: bool = opt(False, "Parse answers exactly as Time-R1's code does.")
    batch_size: int = opt(4, "Prompts per generate call (each gives n completions).")
    limit: int | None = opt(None, "Score only the first N samples.")
    overwrite: bool = opt(False, "Discard an existing scores file instead of resuming it.")
    dtype: str = opt("auto", f"Weights dtype: {', '.join(DTYPES)} (auto: the checkpoint's).")
    attn_implementation: str | None = opt(None, "Attention kernel, e.g. sdpa, flash_attention_2.")
    frame_cache: str | None = opt(None, "Cache sampled frames in this folder (reruns decode nothing).")
    video: VideoOptions = section(VideoOptions, "Video sampling (defaults: Time-R1's, as in training).")
    sampling: ScoreSampling = section(ScoreSampling, "Decoding of the n answers.")

    def __post_init__(self) -> None:
        check(self.n >= 1, "n", f"must be >= 1, got {self.n}")
        check(self.sampling.do_sample or self.n == 1, "n", f"greedy decoding gives one answer; with n = {self.n} "
              "keep sampling.do_sample on")
        check(self.teacher_n >= 1, "teacher_n", f"must be >= 1, got {self.teacher_n}")
        check(self.sampling.do_sample or self.teacher is None or self.teacher_n == 1, "teacher_n",
              f"greedy decoding gives one answer; with teacher_n = {self.teacher_n} keep sampling.do_sample on")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.limit is None or self.limit >= 1, "limit", f"must be >= 1 or none, got {self.limit}")
        check_choice("on_bad", self.on_bad, ON_BAD)
        check_choice("dtype", self.dtype, DTYPES)

    def sampling_params(self, n: int | None = None) -> Any:
        """The :class:`timegrpo.rollout.SamplingParams` of one group of ``n`` (default ``self.n``) completions per
        prompt."""
        import dataclasses

        return dataclasses.replace(self.sampling.params(), num_generations=self.n if n is None else n)


@dataclass
class SelectConfig:
    """``timegrpo curriculum select``: a selector over a scored pool -> a moment_detr annotation file."""

    method: str | None = opt(None, "Selector name (timegrpo.curriculum.select.SELECTORS, or the teacher-guided "
                             "timegrpo.curriculum.tvdf.TVDF_SELECTORS; required to run).")
    annotations: str | None = opt(None, "The pool: an annotation file in any supported format (required).")
    scores: str | None = opt(None, "Scores jsonl of the pool from `timegrpo curriculum score` (required).")
    k: int | None = opt(None, "Budget: how many samples to select (required).")
    seed: int = opt(0, "Seed of the selector's draw.")
    out: str | None = opt(None, "Selected samples as moment_detr jsonl (required); a summary beside it in "
                          "<name>.summary.json.")
    format: str | None = opt(None, "Annotation format name (default: detected from the file).")
    videos: str | None = opt(None, "Folder of the videos (default: the paths written in the annotation file).")
    durations: str | None = opt(None, "Durations file for formats without them (Charades-STA csv).")
    on_bad: str = opt("error", "Bad annotation records: error, skip or clip (as the scorer read them).")

    def __post_init__(self) -> None:
        from timegrpo.curriculum.select import SELECTORS
        from timegrpo.curriculum.tvdf import TVDF_SELECTORS

        if self.method is not None:
            check_choice("method", self.method, SELECTORS.names() + TVDF_SELECTORS.names())
        check(self.k is None or self.k >= 1, "k", f"must be >= 1, got {self.k}")
        check_choice("on_bad", self.on_bad, ON_BAD)
