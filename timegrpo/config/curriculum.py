"""The recipe's curriculum sections: ``masking`` (VideoTG-R1's curriculum masking, applied by ``timegrpo train``)
and ``curriculum`` (the data rounds ``timegrpo curriculum timerft`` drives, TimeRFT).

>>> MaskingConfig(max_fraction=0.8).buckets
['hard']
>>> MaskingConfig(max_fraction=1.5)
Traceback (most recent call last):
...
timegrpo.config.core.ConfigError: masking.max_fraction: must be in [0, 1] (0 = off), got 1.5
>>> CurriculumConfig(rounds=0)
Traceback (most recent call last):
...
timegrpo.config.core.ConfigError: curriculum.rounds: must be >= 1, got 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from timegrpo.config.core import check, check_choice, check_registered, opt

#: The Difficulty Estimation Agent's buckets (:data:`timegrpo.curriculum.difficulty.BUCKETS`, which a test keeps
#: equal to this), the values ``timegrpo curriculum select`` writes to ``meta["difficulty_bucket"]``.
DIFFICULTY_BUCKETS = ("easy", "medium", "hard")


@dataclass
class MaskingConfig:
    """Section ``masking``: VideoTG-R1's curriculum masking during ``timegrpo train`` (not ``sft``): at step ``k``
    of ``K``, samples of the masked ``buckets`` get ``max_fraction * max(0, 1 - k / (until * K))`` of their
    frames outside the ground truth blacked out (:mod:`timegrpo.data.masking`); the ground-truth frames, the
    timestamps and the duration are never changed. Needs ``meta["difficulty_bucket"]`` on the training samples,
    which ``timegrpo curriculum select`` writes."""

    SECTION: ClassVar[str] = "masking"

    max_fraction: float = opt(
        0.0, "Share of the frames outside the ground truth blacked out at step 0, falling linearly to 0 at `until` of "
        "the run (VideoTG-R1: 0.8); 0 = off.")
    until: float = opt(0.5, "Share of the training steps after which nothing is masked (VideoTG-R1: 0.5).")
    order: str = opt(
        "farthest", "Which outside frames go first: farthest (from the nearest ground-truth window) or random "
        "(seeded by train.seed, the step and the qid, so a resumed run masks the same frames).")
    buckets: list[str] = opt(["hard"], "Difficulty buckets (easy, medium, hard) whose samples are masked "
                             "(VideoTG-R1: hard only); others are shown unchanged.")

    def __post_init__(self) -> None:
        s = self.SECTION
        check(0 <= self.max_fraction <= 1, f"{s}.max_fraction", f"must be in [0, 1] (0 = off), got {self.max_fraction}")
        check(0 < self.until <= 1, f"{s}.until", f"must be in (0, 1], got {self.until}")
        check_registered(f"{s}.order", self.order, "timegrpo.data.masking", "MASK_ORDERS")
        check(bool(self.buckets), f"{s}.buckets", "needs at least one bucket (set max_fraction: 0 to turn masking off)")
        for i, bucket in enumerate(self.buckets):
            check_choice(f"{s}.buckets[{i}]", bucket, DIFFICULTY_BUCKETS)

    @property
    def on(self) -> bool:
        """Whether anything is ever masked."""
        return self.max_fraction > 0


@dataclass
class CurriculumConfig:
    """Section ``curriculum``: the data rounds of ``timegrpo curriculum timerft`` (:mod:`timegrpo.curriculum.rounds`):
    per round, score (the pool, or the previous round's training set, with the current model), select ``k``,
    train ``epochs_per_round`` on the selection from the last checkpoint. ``timegrpo train`` ignores it."""

    SECTION: ClassVar[str] = "curriculum"

    strategy: str = opt(
        "timerft", "Round strategy (timegrpo.curriculum.rounds.ROUND_STRATEGIES): timerft = the pool scored by the "
        "base model, the timerft selector; every later round re-scores the previous training set with the current "
        "model and refilters it with timerft_refilter (Time-R1). tvdf, tvdf_even, tvdf_buckets, tvdf_gaussian = "
        "every round scores the whole pool with the current student (and once with the teacher) and selects with "
        "that selector (Video-OPD).")
    rounds: int = opt(5, "Training rounds (Time-R1: 5).")
    k: int = opt(2500, "Samples selected per round (Time-R1: 2500).")
    epochs_per_round: float = opt(1.0, "Epochs trained on each round's selection (Time-R1: 1); overrides "
                                  "train.num_train_epochs and train.max_steps in each round.")
    out: str | None = opt(None, "Folder of the rounds (round_N/ with scores, selection, training run; a rerun resumes "
                          "it); None = <train.output_dir>/rounds.")
    launch: str = opt(
        "", "Command prefix that runs each round's training, e.g. 'accelerate launch --config_file "
        "launch/zero3_offload.yaml' (multi-GPU; the driver appends '-m timegrpo.train --config ROUND_RECIPE'); "
        "empty = this Python interpreter, one process.")
    score_n: int = opt(1, "Answers per query when scoring; a sample's IoU is their mean (Time-R1: one prediction).")
    score_do_sample: bool = opt(False, "Sample the scoring answers at score_temperature (needed when score_n > 1); "
                                "false = greedy (ours: Time-R1 does not say how its base predictions were decoded).")
    score_temperature: float = opt(1.0, "Temperature of sampled scoring answers.")
    score_max_new_tokens: int | None = opt(None, "Token limit of a scoring answer; None = train.max_completion_length.")
    score_batch_size: int = opt(4, "Prompts per generate call when scoring.")
    teacher_n: int = opt(4, "Teacher-guided strategies (tvdf...): answers per query from train.teacher_model_name_or_path "
                         "(Video-OPD: k_t = 4; scored once, shared by every round).")

    def __post_init__(self) -> None:
        s = self.SECTION
        check(bool(self.strategy), f"{s}.strategy", "must not be empty")
        for name in ("rounds", "k", "score_n", "score_batch_size", "teacher_n"):
            value = getattr(self, name)
            check(value >= 1, f"{s}.{name}", f"must be >= 1, got {value}")
        check(self.epochs_per_round > 0, f"{s}.epochs_per_round", f"must be > 0, got {self.epochs_per_round}")
        check(self.score_do_sample or self.score_n == 1, f"{s}.score_n",
              f"greedy decoding gives one answer; with score_n = {self.score_n} set score_do_sample: true")
        check(self.score_temperature > 0, f"{s}.score_temperature", f"must be > 0, got {self.score_temperature}")
        tokens = self.score_max_new_tokens
        check(tokens is None or tokens >= 1, f"{s}.score_max_new_tokens", f"must be >= 1 or null, got {tokens}")
