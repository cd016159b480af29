"""Metrics of predictions against annotations: ``timegrpo score`` and the metrics.json of ``timegrpo eval``.

A predictions line has ``qid`` and either ``pred_relevant_windows`` (``[[s, e, score], ...]``, ranked; the
Moment-DETR submission format, optionally with ``pred_saliency_scores``, one per 2 s clip) or a raw
``completion`` to parse (:func:`timegrpo.parsing.parse_answer`; ``from_completion`` parses it even when
windows are present, e.g. with ``strict``). Grounded QA adds the answer as ``pred_answer`` (or ReXTime's
``ans``): a letter, an option index or an option's text; otherwise it is parsed from the completion.

What is reported (one flat dict, ``timegrpo score --json`` prints it):

* every benchmark: ``R1@0.3``, ``R1@0.5``, ``R1@0.7``, ``mIoU`` of the top-1 window (max over GT windows);
* the benchmark's own keys (:mod:`timegrpo.evaluate.benchmarks`: ``qvhighlights``' official ``brief`` keys,
  ``nextgqa`` / ``rextime``'s grounded-QA keys);
* counts, keys starting with ``n_``: queries scored, unparsable predictions (IoU 0), annotations without a
  prediction (``missing='zero'``: scored as unparsable, the default; ``skip``: left out), predictions whose qid
  is not in the annotations (ignored), duplicated prediction qids (the first is used), annotations without a GT
  window (left out of the grounding metrics), and the annotation anomalies the reader reported.

Departure from the official QVHighlights script: a query whose prediction has no window (missing or
unparsable) is scored AP 0 and a miss for R1 (the official script leaves an empty list out of the mAP mean
and crashes on it in R1). With a prediction for every query the numbers are the official ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timegrpo.config.core import ConfigError
from timegrpo.data.schema import Sample
from timegrpo.evaluate.benchmarks import BENCHMARKS, detect_benchmark
from timegrpo.evaluate.config import PredictionError, ScoreConfig
from timegrpo.evaluate.predictions import load_predictions, write_atomic
from timegrpo.evaluate.protocols import PROTOCOLS
from timegrpo.metrics import grounding_metrics
from timegrpo.rewards import get_reward

#: Counts worth a line on stderr, with what they mean.
NOTES = (
    ("n_missing_prediction", "annotations without a prediction"),
    ("n_unknown_qid", "predictions whose qid is not in the annotations (ignored)"),
    ("n_duplicate_prediction", "duplicated prediction qids (the first is used)"),
    ("n_unparsed", "queries without a parsable prediction (IoU 0)"),
    ("n_invalid_windows", "predicted windows that were not finite [start <= end] numbers (scored IoU 0)"),
    ("n_no_gt_windows", "annotations without a ground-truth window (not scored)"),
    ("n_annotation_dropped", "annotations dropped by the reader (--on-bad)"),
)


@dataclass
class ScoreResult:
    """``metrics`` by name (percent) and ``counts`` (``n_...``); ``benchmark`` is the metric set used."""

    benchmark: str
    metrics: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)

    def flat(self) -> dict[str, float | int]:
        return {**self.metrics, **self.counts}

    def notes(self) -> list[str]:
        """The counts of :data:`NOTES` that are not zero, as ``"3 annotations without a prediction"``."""
        return [f"{self.counts[k]} {label}" for k, label in NOTES if self.counts.get(k)]


def score_samples(
    samples: Sequence[Sample], predictions: dict[str, dict[str, Any]], *, benchmark: str = "grounding",
    missing: str = "zero", strict: bool = False, from_completion: bool = False, protocol: str = "spec",
) -> ScoreResult:
    """Score ``predictions`` (``{qid: record}``) against ``samples`` with the metric set ``benchmark``
    (:data:`timegrpo.evaluate.benchmarks.BENCHMARKS`) under the evaluation ``protocol``
    (:data:`timegrpo.evaluate.protocols.PROTOCOLS`); see the module docstring."""
    if missing not in ("zero", "skip"):
        raise ValueError(f"missing must be 'zero' or 'skip', not {missing!r}")
    bench = BENCHMARKS.get(benchmark)
    proto = PROTOCOLS.get(protocol)
    if proto.benchmarks is not None and benchmark not in proto.benchmarks:
        raise ConfigError(f"protocol {protocol!r} scores {', '.join(proto.benchmarks)} only, not {benchmark!r}; "
                          f"pass --benchmark {proto.benchmarks[0]} (its R1/mIoU) or the default --protocol spec")
    read = proto.read or bench.read
    qids = {s.qid for s in samples}
    counts = {
        "n_annotations": len(samples),
        "n_missing_prediction": sum(s.qid not in predictions for s in samples),
        "n_unknown_qid": sum(q not in qids for q in predictions),
    }
    kept = [s for s in samples if missing == "zero" or s.qid in predictions]
    with_gt = [s for s in kept if s.windows]
    counts["n_no_gt_windows"] = len(kept) - len(with_gt)
    preds = [read(predictions.get(s.qid), s, strict, from_completion) for s in with_gt]
    counts["n_scored"] = len(with_gt)
    counts["n_unparsed"] = sum(p.top1 is None for p in preds)
    counts["n_invalid_windows"] = sum(p.invalid for p in preds)
    metrics = grounding_metrics([proto.iou(p.top1, s.windows) for p, s in zip(preds, with_gt)], above=proto.above)
    more_metrics, more_counts = bench.metrics(with_gt, preds)
    metrics.update(more_metrics)
    counts.update(more_counts)
    return ScoreResult(benchmark, metrics, counts)


def markdown_table(result: ScoreResult, title: str | None = None) -> str:
    """The metrics and counts as a two-column markdown table.

    >>> print(markdown_table(ScoreResult("grounding", {"mIoU": 41.234}, {"n_scored": 3})))
    | metric | value |
    |---|---|
    | mIoU | 41.23 |
    | n_scored | 3 |
    """
    lines = [f"### {title}", ""] if title else []
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in result.metrics.items()]
    lines += [f"| {k} | {v} |" for k, v in result.counts.items()]
    return "\n".join(lines)


def score_file(cfg: ScoreConfig) -> tuple[ScoreResult, str]:
    """``timegrpo score``: the :class:`ScoreResult` of ``cfg.predictions`` against ``cfg.annotations`` (with the
    duplicate and annotation-anomaly counts) and its markdown table (also written to ``cfg.out_md``)."""
    from timegrpo.data.formats import load_annotations
    from timegrpo.evaluate.config import require

    require(cfg, "predictions", "annotations")
    assert cfg.predictions is not None and cfg.annotations is not None
    samples, report = load_annotations(cfg.annotations, cfg.format, on_bad=cfg.on_bad, durations=cfg.durations)
    predictions, duplicates = load_predictions(cfg.predictions)
    benchmark = detect_benchmark(samples, report.format) if cfg.benchmark == "auto" else cfg.benchmark
    if cfg.protocol != "spec" and cfg.benchmark == "auto":
        benchmark = "grounding"  # a protocol defined for R1/mIoU only scores the benchmark as grounding
    try:
        result = score_samples(samples, predictions, benchmark=benchmark, missing=cfg.missing, strict=cfg.strict,
                               from_completion=cfg.from_completion, protocol=cfg.protocol)
    except PredictionError as err:
        raise PredictionError(f"{cfg.predictions}: {err}") from None
    result.counts["n_duplicate_prediction"] = duplicates
    for kind, n in sorted(report.counts.items()):
        result.counts[f"n_annotation_{kind}"] = n
    result.counts["n_annotation_dropped"] = report.n_dropped
    table = markdown_table(result, f"{Path(cfg.predictions).name} vs {Path(cfg.annotations).name} ({benchmark})")
    if cfg.out_md:
        write_atomic(cfg.out_md, table + "\n")
    return result, table


# ----------------------------------------------------------------------------------------------- eval records


def summarize(records: Sequence[dict[str, Any]], *, think: bool = True) -> dict[str, float]:
    """R1@{0.3,0.5,0.7}, mIoU (percent), ``format_rate`` (percent of completions in the template's format,
    the ``format`` reward for think templates and ``answer_format`` otherwise) and the ``unparsed`` count of
    prediction records (:func:`timegrpo.evaluate.engine.prediction_record`).

    IoU metrics cover the records with a ground truth (``iou`` not None); ``n`` counts those, the format rate
    and ``unparsed`` cover every record.

    >>> recs = [{"completion": c, "pred_relevant_windows": w, "iou": iou} for c, w, iou in [
    ...     ("<answer>10 to 20</answer>", [[10.0, 20.0, 1.0]], 1.0),
    ...     ("<answer>15 to 25</answer>", [[15.0, 25.0, 1.0]], 1 / 3), ("no answer", [], 0.0)]]
    >>> m = summarize(recs, think=False)
    >>> round(m["mIoU"], 2), round(m["R1@0.3"], 2), m["format_rate"], m["unparsed"], m["n"]
    (44.44, 66.67, 66.67, 1, 3)
    """
    scored = [r for r in records if r.get("iou") is not None]
    ious = [r["iou"] if r["pred_relevant_windows"] else 0.0 for r in scored]
    out = dict(grounding_metrics(ious))
    fmt = get_reward("format" if think else "answer_format")
    rates = fmt([r["completion"] for r in records]) if records else []
    out["format_rate"] = round(100.0 * sum(float(v or 0.0) for v in rates) / max(len(records), 1), 2)
    out["unparsed"] = sum(1 for r in records if not r["pred_relevant_windows"])
    out["n"] = len(scored)
    return out


def eval_metrics(samples: Sequence[Sample], records: Sequence[dict[str, Any]], *, benchmark: str = "grounding",
                 think: bool = True, skipped: dict[str, int] | None = None) -> tuple[dict[str, Any], ScoreResult]:
    """metrics.json for ``records`` against ``samples`` and the :class:`ScoreResult` behind it.

    The R1/mIoU (and the benchmark's own keys, e.g. ``qvhighlights``' official ``MR-...``) come from
    :func:`score_samples` over the samples that have a prediction; ``format_rate``, ``unparsed`` and ``n`` from
    :func:`summarize`; ``n_truncated`` counts completions that hit the token limit; ``skipped`` counts the
    samples left out by kind.
    """
    by_qid = {str(r["qid"]): r for r in records}
    done = [s for s in samples if s.qid in by_qid]
    kept = [by_qid[s.qid] for s in done]
    result = score_samples(done, by_qid, benchmark=benchmark)
    summary = summarize(kept, think=think)
    skipped = dict(sorted((skipped or {}).items()))
    metrics: dict[str, Any] = {**result.metrics, "format_rate": summary["format_rate"]}
    counts = {"n": summary["n"], "unparsed": summary["unparsed"],
              "n_truncated": sum(1 for r in kept if r.get("truncated")),
              "n_skipped": sum(skipped.values()),
              **{k: v for k, v in result.counts.items()
                 if k not in ("n_scored", "n_unparsed", "n_missing_prediction", "n_unknown_qid")}}
    out = {**metrics, **counts, "skipped": skipped, "benchmark": benchmark}
    return out, ScoreResult(benchmark, metrics, {**counts, **{f"n_skipped_{k}": v for k, v in skipped.items()}})
