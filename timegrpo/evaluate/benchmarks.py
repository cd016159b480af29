"""Benchmarks by name: how a prediction record is read and which metrics are computed on top of R1/mIoU.

Every benchmark reports ``R1@0.3``, ``R1@0.5``, ``R1@0.7`` and ``mIoU`` of the top-1 window (max over the GT
windows; :func:`timegrpo.evaluate.score.score_samples`). A :class:`Benchmark` adds its own reader of a predictions
line (:func:`read_windows`, or :func:`read_windows_and_answer` for grounded QA) and its own metrics and counts:

* ``grounding``: nothing more;
* ``qvhighlights``: the official QVHighlights ``brief`` keys (:mod:`timegrpo.metrics.qvhighlights`);
* ``nextgqa`` / ``rextime``: their grounded-QA keys (:mod:`timegrpo.metrics.gqa`).

:func:`detect_benchmark` picks one from the annotations (``--benchmark auto``). Add a benchmark with
``BENCHMARKS.register(name, Benchmark(...))``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from timegrpo.data.schema import Sample
from timegrpo.evaluate.config import PredictionError
from timegrpo.metrics import nextgqa_metrics, qvhighlights_metrics, rextime_metrics, saliency_labels
from timegrpo.parsing import answer_letter_of, parse_answer, parse_glue, parse_letter
from timegrpo.registry import Registry

#: What ``--benchmark auto`` falls back to when no benchmark recognises the annotations.
DEFAULT_BENCHMARK = "grounding"


@dataclass
class Prediction:
    """What one predictions line says about its query, parsed once."""

    windows: list[list[float]]  # ranked [[s, e, score], ...]; empty when unparsable / missing
    saliency: list[float] | None = None
    answer: str | None = None  # option letter, None when none / unparsable
    invalid: int = 0  # given windows that were not [start <= end] finite numbers (scored as INVALID_WINDOW)

    @property
    def top1(self) -> tuple[float, float] | None:
        return (self.windows[0][0], self.windows[0][1]) if self.windows else None


#: ``(record or None, sample, strict, from_completion) -> Prediction``; None is a missing prediction.
Reader = Callable[[dict[str, Any] | None, Sample, bool, bool], Prediction]
#: ``(samples with a GT window, their predictions) -> (metrics, counts)`` added to the R1/mIoU ones.
Metrics = Callable[[Sequence[Sample], Sequence[Prediction]], tuple[dict[str, float], dict[str, int]]]


@dataclass(frozen=True)
class Benchmark:
    """A metric set: ``read`` turns a predictions line into a :class:`Prediction`, ``metrics`` adds keys and
    counts, ``detect(samples, format)`` says whether ``--benchmark auto`` picks it, ``notes`` what it reports."""

    read: Reader
    metrics: Metrics
    notes: str
    detect: Callable[[Sequence[Sample], str], bool] | None = None


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


#: What an invalid predicted window is scored as: the empty window at 0, which overlaps no ground truth (IoU 0
#: under every metric, a false positive in MR-mAP), keeping its rank and score.
INVALID_WINDOW = (0.0, 0.0)


def valid_window(w: Any) -> tuple[float, float] | None:
    """``(start, end)`` of a predicted window when it is one: two finite numbers with ``start <= end`` (a bool or a
    string is not a number); None otherwise.

    >>> valid_window([1, 2.5, 0.9]), valid_window([3, 1]), valid_window(["1", 2]), valid_window([float("nan"), 1])
    ((1.0, 2.5), None, None, None)
    """
    if not isinstance(w, (list, tuple)) or len(w) < 2:
        return None
    s, e = w[0], w[1]
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in (s, e)):
        return None
    return (float(s), float(e)) if s <= e else None


def _score_of(w: Any, k: int, n: int) -> float:
    """A window's confidence; without one (or with a non-numeric one) the given rank is kept."""
    if isinstance(w, (list, tuple)) and len(w) > 2:
        try:
            score = float(w[2])
        except (TypeError, ValueError):
            score = math.nan
        if math.isfinite(score):
            return score
    return 1.0 - k / max(n, 1)


def _windows_of(raw: Any) -> tuple[list[list[float]], int]:
    """The ranked ``[[s, e, score], ...]`` of ``pred_relevant_windows`` and how many were invalid (non-numeric,
    NaN, infinite or reversed: scored as :data:`INVALID_WINDOW`, never credit)."""
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    out, invalid = [], 0
    for k, w in enumerate(items):
        span = valid_window(w)
        invalid += span is None
        out.append([*(span or INVALID_WINDOW), _score_of(w, k, len(items))])
    return out, invalid


def read_windows(rec: dict[str, Any] | None, sample: Sample, strict: bool = False,
                 from_completion: bool = False) -> Prediction:
    """The ranked windows (and saliency scores) of one record: ``pred_relevant_windows`` as given (invalid ones
    counted and scored as :data:`INVALID_WINDOW`), or the span of the raw ``completion``
    (:func:`timegrpo.parsing.parse_answer`; when it has none and not ``strict``, the first span of a ``<glue>``
    block, VideoChat-R1's grounded-QA answer: Time-R1's parser, which ``strict`` follows, knows no ``<glue>``).
    ``from_completion`` parses the completion even when windows are given. None (a missing prediction) has no
    window.

    >>> s = Sample("1", "v", None, 30.0, "q", [(0.0, 5.0)])
    >>> read_windows({"completion": "<answer>2 to 50</answer>"}, s).windows
    [[2.0, 30.0, 1.0]]
    >>> read_windows({"pred_relevant_windows": [[1, 2], [3, 4]]}, s).windows
    [[1.0, 2.0, 1.0], [3.0, 4.0, 0.5]]
    >>> read_windows({"completion": "<glue>[[3, 9]]</glue>"}, s, strict=True).windows
    []
    """
    return _read(rec, sample, strict, from_completion, glue=not strict)


def _read(rec: dict[str, Any] | None, sample: Sample, strict: bool, from_completion: bool, *,
          glue: bool) -> Prediction:
    if rec is None:
        return Prediction([])
    text = rec.get("completion")
    invalid = 0
    if "pred_relevant_windows" in rec and not (from_completion and text is not None):
        windows, invalid = _windows_of(rec["pred_relevant_windows"])
    elif text is not None:
        span = parse_answer(text, sample.duration, strict=strict)
        if span is None and glue:
            glued = parse_glue(text, sample.duration, strict=strict)
            span = glued[0] if glued else None
        windows = [] if span is None else [[span[0], span[1], 1.0]]
    else:
        windows = []
    return Prediction(windows, _saliency_of(rec.get("pred_saliency_scores"), sample.qid), invalid=invalid)


def _saliency_of(raw: Any, qid: str) -> list[float] | None:
    """``pred_saliency_scores`` as floats; a value that is not a finite number is an error naming the qid (the
    ranking metrics have no "no credit" for one clip)."""
    if raw is None:
        return None
    try:
        out = [float(x) for x in raw]
    except (TypeError, ValueError):
        out = [math.nan]
    if not all(math.isfinite(x) for x in out):
        raise PredictionError(f"qid {qid}: pred_saliency_scores must be finite numbers, got {str(raw)[:80]}")
    return out


def read_windows_and_answer(rec: dict[str, Any] | None, sample: Sample, strict: bool = False,
                            from_completion: bool = False) -> Prediction:
    """:func:`read_windows` plus the answered option letter: ``pred_answer`` (or ReXTime's ``ans``) as a letter,
    an option index or an option's text (None when it is none of them), else parsed from the completion
    (:func:`timegrpo.parsing.parse_letter`). ``<glue>`` spans are read under ``strict`` too: they are the answer
    format of the grounded-QA models these benchmarks score."""
    pred = _read(rec, sample, strict, from_completion, glue=True)
    if rec is None:
        return pred
    options = sample.meta.get("options")
    raw_answer = rec.get("pred_answer", rec.get("ans"))
    text = rec.get("completion")
    if raw_answer is not None:
        try:
            pred.answer = answer_letter_of(raw_answer, options)
        except ValueError:
            pred.answer = None
    else:
        pred.answer = parse_letter(text, options) if text is not None else None
    return pred


def _no_more(samples: Sequence[Sample], preds: Sequence[Prediction]) -> tuple[dict[str, float], dict[str, int]]:
    return {}, {}


def _qvhighlights(samples: Sequence[Sample], preds: Sequence[Prediction]
                  ) -> tuple[dict[str, float], dict[str, int]]:
    gt_scores = [saliency_labels(s.duration, s.meta.get("relevant_clip_ids", []), s.meta.get("saliency_scores", []))
                 for s in samples]
    with_saliency = any(p.saliency is not None for p in preds)
    metrics = qvhighlights_metrics(
        [p.windows for p in preds], [s.windows for s in samples],
        [p.saliency for p in preds] if with_saliency else None, gt_scores if with_saliency else None,
    )
    return metrics, {"n_missing_saliency": sum(p.saliency is None for p in preds)}


def _grounded_qa(metrics_fn: Callable[..., dict[str, float]]) -> Metrics:
    """The metrics of a grounded-QA benchmark: top-1 spans, GT windows and per-question answer correctness."""

    def metrics(samples: Sequence[Sample], preds: Sequence[Prediction]) -> tuple[dict[str, float], dict[str, int]]:
        truth = [answer_letter_of(s.meta.get("answer"), s.meta.get("options")) for s in samples]
        correct = [p.answer is not None and p.answer == t for p, t in zip(preds, truth)]
        counts = {"n_unparsed_answer": sum(p.answer is None for p in preds)}
        return metrics_fn([p.top1 for p in preds], [s.windows for s in samples], correct), counts

    return metrics


def _is_format(name: str) -> Callable[[Sequence[Sample], str], bool]:
    return lambda samples, fmt: fmt == name


def _has_saliency(samples: Sequence[Sample], fmt: str) -> bool:
    return fmt == "moment_detr" and bool(samples) and {"saliency_scores", "relevant_clip_ids"} <= samples[0].meta.keys()


def _register_builtins() -> None:
    BENCHMARKS.register("grounding", Benchmark(
        read_windows, _no_more, "R1@0.3/0.5/0.7 and mIoU only (any annotation format)."))
    BENCHMARKS.register("qvhighlights", Benchmark(
        read_windows, _qvhighlights,
        "QVHighlights: also the official Moment-DETR `brief` keys, MR-full-R1@0.5 ... HL-min-VeryGood-Hit1 "
        "(HL keys only with pred_saliency_scores); auto for a moment_detr file with saliency labels.",
        _has_saliency))
    BENCHMARKS.register("nextgqa", Benchmark(
        read_windows_and_answer, _grounded_qa(nextgqa_metrics),
        "NExT-GQA: also mIoP, IoP@0.3/0.5, IoU@0.3/0.5, Acc@GQA, Acc@QA; auto for the nextgqa format.",
        _is_format("nextgqa")))
    BENCHMARKS.register("rextime", Benchmark(
        read_windows_and_answer, _grounded_qa(rextime_metrics),
        "ReXTime: also Acc and Acc@IoU>=0.5; auto for the rextime format.", _is_format("rextime")))


_register_builtins()


def detect_benchmark(samples: Sequence[Sample], fmt: str) -> str:
    """The benchmark whose ``detect`` recognises the annotations (``nextgqa``/``rextime`` by format,
    ``qvhighlights`` for a moment_detr file with saliency), else :data:`DEFAULT_BENCHMARK`.

    >>> detect_benchmark([], "rextime"), detect_benchmark([], "charades_sta")
    ('rextime', 'grounding')
    """
    found = [name for name in BENCHMARKS.names()
             if BENCHMARKS.get(name).detect is not None and BENCHMARKS.get(name).detect(samples, fmt)]
    if len(found) > 1:
        raise ValueError(f"annotations of format {fmt!r} match several benchmarks ({', '.join(found)}); "
                         "name one with --benchmark")
    return found[0] if found else DEFAULT_BENCHMARK
