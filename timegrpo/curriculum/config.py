"""The options of ``timegrpo curriculum score`` (:class:`CurriculumScoreConfig`), ``reflect``
(:class:`ReflectConfig`) and ``select`` (:class:`SelectConfig`), on the one config mechanism
(:mod:`timegrpo.config.core`). ``score`` and ``reflect`` share :class:`PoolModelOptions`.

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
class PoolModelOptions:
    """What every stage that runs a model over an annotation file shares (``score``, ``reflect``)."""

    model: str | None = opt(None, "Model folder or Hub id (required to run).")
    annotations: str | None = opt(None, "Annotation file in any supported format (required to run).")
    out: str | None = opt(None, "File to write (required to run).")
    format: str | None = opt(None, "Annotation format name (default: detected from the file).")
    videos: str | None = opt(None, "Folder of the videos (default: the paths written in the annotation file).")
    durations: str | None = opt(None, "Durations file for formats without them (Charades-STA csv).")
    on_bad: str = opt("error", "Bad annotation records: stop (error), leave out and count (skip), or clamp windows "
                      "into [0, duration] (clip).")
    template: str | None = opt("think", "Prompt template name: think, no_think or a registered one.")
    batch_size: int = opt(4, "Prompts per generate call (each gives n completions).")
    limit: int | None = opt(None, "Only the first N samples.")
    overwrite: bool = opt(False, "Discard an existing output instead of resuming it.")
    dtype: str = opt("auto", f"Weights dtype: {', '.join(DTYPES)} (auto: the checkpoint's).")
    attn_implementation: str | None = opt(None, "Attention kernel, e.g. sdpa, flash_attention_2.")
    frame_cache: str | None = opt(None, "Cache sampled frames in this folder (reruns decode nothing).")
    video: VideoOptions = section(VideoOptions, "Video sampling (defaults: Time-R1's, as in training).")
    sampling: ScoreSampling = section(ScoreSampling, "Decoding of the n answers.")

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.limit is None or self.limit >= 1, "limit", f"must be >= 1 or none, got {self.limit}")
        check_choice("on_bad", self.on_bad, ON_BAD)
        check_choice("dtype", self.dtype, DTYPES)


@dataclass
class CurriculumScoreConfig(PoolModelOptions):
    """``timegrpo curriculum score``: n answers per query from a model; one scores row (qid, ious) per sample."""

    out: str | None = opt(None, "Scores jsonl to write (required; a rerun resumes it; settings beside it in "
                          "<name>.config.json).")
    template: str = opt("think", "Prompt template name: think, no_think or a registered one.")
    n: int = opt(8, "Answers per query (the G of one rollout group).")
    teacher: str | None = opt(None, "A teacher model (Video-OPD's TVDF): it answers each query teacher_n times first, "
                              "and every row gets its IoUs as teacher_ious beside ious.")
    teacher_n: int = opt(4, "Answers per query from the teacher (Video-OPD: k_t = 4).")
    teacher_scores: str | None = opt(None, "The teacher's own rows (resumable; several runs over the same file "
                                     "can share it: the teacher does not change); default <out stem>.teacher.jsonl.")
    completions: bool = opt(False, "Also write the n completions of each sample.")
    strict_parse: bool = opt(False, "Parse answers exactly as Time-R1's code does.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n >= 1, "n", f"must be >= 1, got {self.n}")
        check(self.sampling.do_sample or self.n == 1, "n", f"greedy decoding gives one answer; with n = {self.n} "
              "keep sampling.do_sample on")
        check(self.teacher_n >= 1, "teacher_n", f"must be >= 1, got {self.teacher_n}")
        check(self.sampling.do_sample or self.teacher is None or self.teacher_n == 1, "teacher_n",
              f"greedy decoding gives one answer; with teacher_n = {self.teacher_n} keep sampling.do_sample on")

    def sampling_params(self, n: int | None = None) -> Any:
        """The :class:`timegrpo.rollout.SamplingParams` of one group of ``n`` (default ``self.n``) completions per
        prompt."""
        import dataclasses

        return dataclasses.replace(self.sampling.params(), num_generations=self.n if n is None else n)


@dataclass
class ReflectConfig(PoolModelOptions):
    """``timegrpo curriculum reflect``: the Boundary Reflection Agent over an annotation file."""

    out: str | None = opt(None, "Annotation file to write (moment_detr: every sample, with bra_flagged, bra_reason "
                          "and bra_answers in meta); the answers in <name>.answers.jsonl (a rerun resumes them), "
                          "a summary in <name>.summary.json.")
    template: str | None = opt(None, "Prompt template (default: the variant's; the grounding variant asks the "
                               "grounding question with think).")
    variant: str = opt("instruction", "instruction: ask for the other time ranges or none (VideoTG-R1); grounding: "
                       "ask the grounding question on the blacked-out video (for models that do not follow the "
                       "instruction).")
    samples: int = opt(3, "Sampled answers per query.")
    agree: int = opt(2, "Answers that must flag a sample (instruction) or agree outside it (grounding); 1 = any.")
    min_iou: float = opt(0.5, "Grounding variant: IoU every pair of agreeing windows needs.")

    def __post_init__(self) -> None:
        from timegrpo.curriculum.reflection import VARIANTS

        super().__post_init__()
        check_choice("variant", self.variant, VARIANTS.names())
        check(self.samples >= 1, "samples", f"must be >= 1, got {self.samples}")
        check(1 <= self.agree <= self.samples, "agree", f"must be in [1, samples = {self.samples}], got {self.agree}")
        check(0 <= self.min_iou <= 1, "min_iou", f"must be in [0, 1], got {self.min_iou}")
        check(self.sampling.do_sample or self.samples == 1, "samples", "greedy decoding gives one answer; keep "
              "sampling.do_sample on")

    def grounding_template(self) -> str:
        """The prompt template the agent asks with: ``template``, else the variant's, else ``think``."""
        from timegrpo.curriculum.reflection import VARIANTS

        return self.template or VARIANTS.get(self.variant).template or "think"

    def sampling_params(self) -> Any:
        """The :class:`timegrpo.rollout.SamplingParams` of ``samples`` completions per prompt."""
        import dataclasses

        return dataclasses.replace(self.sampling.params(), num_generations=self.samples)


@dataclass
class SelectConfig:
    """``timegrpo curriculum select``: a selector over a scored pool -> a moment_detr annotation file."""

    method: str | None = opt(None, "Selector name (timegrpo.curriculum.select.SELECTORS, or the teacher-guided "
                             "timegrpo.curriculum.tvdf.TVDF_SELECTORS; required to run).")
    annotations: str | None = opt(None, "The pool: an annotation file in any supported format (required).")
    scores: str | None = opt(None, "Scores jsonl of the pool from `timegrpo curriculum score` (required).")
    k: int | None = opt(None, "Budget: how many samples to select (this or fraction required).")
    fraction: float | None = opt(None, "Budget as a share of the whole pool, BRA-flagged samples included "
                                 "(VideoTG-R1: 0.1): k = round(fraction * pool); drawn after the flagged are dropped.")
    drop_flagged: bool = opt(True, "Leave out the samples `curriculum reflect` flagged (meta bra_flagged) before "
                             "selecting; counted in the summary.")
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
        check(self.fraction is None or 0 < self.fraction <= 1, "fraction", f"must be in (0, 1], got {self.fraction}")
        check(self.k is None or self.fraction is None, "k", "give k or fraction, not both")
        check_choice("on_bad", self.on_bad, ON_BAD)
