"""``timegrpo score``: metrics of a predictions jsonl against an annotation file of any supported format.

A predictions line has ``qid`` and either ``pred_relevant_windows`` (``[[s, e, score], ...]``, ranked; the
Moment-DETR submission format, optionally with ``pred_saliency_scores``, one per 2 s clip) or a raw
``completion`` to parse (:func:`timegrpo.spans.parse_answer`; ``--from-completion`` parses it even when
windows are present, e.g. with ``--strict``). Grounded QA adds the answer as ``pred_answer`` (or ReXTime's
``ans``): a letter, an option index or an option's text; otherwise it is parsed from the completion.

What is reported (one flat dict, ``--json`` prints it):

* every benchmark: ``R1@0.3``, ``R1@0.5``, ``R1@0.7``, ``mIoU`` of the top-1 window (max over GT windows);
* ``qvhighlights`` (a ``moment_detr`` file with saliency scores): also the official ``brief`` keys
  (``MR-full-R1@0.5`` ... ``HL-min-VeryGood-Hit1``, :mod:`timegrpo.metrics.qvhighlights`);
* ``nextgqa`` / ``rextime``: their grounded-QA keys (:mod:`timegrpo.metrics.gqa`);
* counts, keys starting with ``n_``: queries scored, unparsable predictions (IoU 0), annotations without a
  prediction (``--missing zero``: scored as unparsable, the default; ``skip``: left out), predictions whose qid
  is not in the annotations (ignored), duplicated prediction qids (the first is used), annotations without a GT
  window (left out of the grounding metrics), and the annotation anomalies the reader reported.

Departure from the official QVHighlights script: a query whose prediction has no window (missing or
unparsable) is scored AP 0 and a miss for R1 (the official script leaves an empty list out of the mAP mean
and crashes on it in R1). With a prediction for every query the numbers are the official ones.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCHMARKS = ("auto", "grounding", "qvhighlights", "nextgqa", "rextime")
#: Counts worth a line on stderr, with what they mean.
_NOTES = (
    ("n_missing_prediction", "annotations without a prediction"),
    ("n_unknown_qid", "predictions whose qid is not in the annotations (ignored)"),
    ("n_duplicate_prediction", "duplicated prediction qids (the first is used)"),
    ("n_unparsed", "queries without a parsable prediction (IoU 0)"),
    ("n_no_gt_windows", "annotations without a ground-truth window (not scored)"),
    ("n_annotation_dropped", "annotations dropped by the reader (--on-bad)"),
)


@dataclass
class Prediction:
    """What one predictions line says about its query, parsed once."""

    windows: list[list[float]]  # ranked [[s, e, score], ...]; empty when unparsable / missing
    saliency: list[float] | None = None
    answer: str | None = None  # option letter, None when none / unparsable

    @property
    def top1(self) -> tuple[float, float] | None:
        return (self.windows[0][0], self.windows[0][1]) if self.windows else None


@dataclass
class ScoreResult:
    """``metrics`` by name (percent) and ``counts`` (``n_...``); ``benchmark`` is the metric set used."""

    benchmark: str
    metrics: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)

    def flat(self) -> dict[str, float | int]:
        return {**self.metrics, **self.counts}


def load_predictions(path: str | Path) -> tuple[dict[str, dict[str, Any]], int]:
    """``{qid: record}`` from a jsonl (qids as str) and how many duplicated qids were ignored (first kept)."""
    records: dict[str, dict[str, Any]] = {}
    duplicates = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {lineno}: not valid json ({err}); fix or remove the line") from None
            if not isinstance(rec, dict) or "qid" not in rec:
                raise ValueError(f"{path} line {lineno}: a prediction must be a json object with a 'qid'")
            if not any(k in rec for k in ("pred_relevant_windows", "completion", "pred_saliency_scores")):
                raise ValueError(f"{path} line {lineno} (qid {rec['qid']}): needs 'pred_relevant_windows' or "
                                 "'completion' (or 'pred_saliency_scores')")
            qid = str(rec["qid"])
            if qid in records:
                duplicates += 1
                continue
            records[qid] = rec
    return records, duplicates


def _windows_of(raw: Any, where: str) -> list[list[float]]:
    out = []
    for k, w in enumerate(raw or []):
        if not isinstance(w, (list, tuple)) or len(w) < 2:
            raise ValueError(f"{where}: pred_relevant_windows[{k}] = {w!r} is not [start, end(, score)]")
        score = float(w[2]) if len(w) > 2 else 1.0 - k / max(len(raw), 1)  # no score: keep the given rank
        out.append([float(w[0]), float(w[1]), score])
    return out


def parse_prediction(rec: dict[str, Any] | None, sample: Any, *, strict: bool = False,
                     from_completion: bool = False) -> Prediction:
    """A :class:`Prediction` from one record (None: missing, scored as unparsable)."""
    from timegrpo.rewards.iou import parse_glue
    from timegrpo.rewards.qa import answer_letter_of, parse_letter
    from timegrpo.spans import parse_answer

    if rec is None:
        return Prediction([])
    where = f"prediction for qid {sample.qid}"
    text = rec.get("completion")
    if "pred_relevant_windows" in rec and not (from_completion and text is not None):
        windows = _windows_of(rec["pred_relevant_windows"], where)
    elif text is not None:
        span = parse_answer(text, sample.duration, strict=strict)
        if span is None:  # grounded QA: the spans may sit in a <glue> block (VideoChat-R1); its first one
            glue = parse_glue(text, sample.duration, strict=strict)
            span = glue[0] if glue else None
        windows = [] if span is None else [[span[0], span[1], 1.0]]
    else:
        windows = []
    options = sample.meta.get("options")
    raw_answer = rec.get("pred_answer", rec.get("ans"))
    if raw_answer is not None:
        try:
            answer = answer_letter_of(raw_answer, options)
        except ValueError:
            answer = None
    else:
        answer = parse_letter(text, options) if text is not None else None
    saliency = rec.get("pred_saliency_scores")
    return Prediction(windows, None if saliency is None else [float(x) for x in saliency], answer)


def detect_benchmark(samples: Sequence[Any], fmt: str) -> str:
    """``nextgqa``/``rextime`` by format; ``qvhighlights`` for a moment_detr file with saliency; else ``grounding``."""
    if fmt in ("nextgqa", "rextime"):
        return fmt
    if fmt == "moment_detr" and samples and {"saliency_scores", "relevant_clip_ids"} <= samples[0].meta.keys():
        return "qvhighlights"
    return "grounding"


def _qvh_metrics(samples: Sequence[Any], preds: Sequence[Prediction]) -> dict[str, float]:
    from timegrpo.metrics.qvhighlights import qvhighlights_metrics, saliency_labels

    gt_scores = [saliency_labels(s.duration, s.meta.get("relevant_clip_ids", []), s.meta.get("saliency_scores", []))
                 for s in samples]
    with_saliency = any(p.saliency is not None for p in preds)
    return qvhighlights_metrics(
        [p.windows for p in preds], [s.windows for s in samples],
        [p.saliency for p in preds] if with_saliency else None, gt_scores if with_saliency else None,
    )


def score_samples(
    samples: Sequence[Any], predictions: dict[str, dict[str, Any]], *, benchmark: str = "grounding",
    missing: str = "zero", strict: bool = False, from_completion: bool = False,
) -> ScoreResult:
    """Score ``predictions`` (``{qid: record}``) against ``samples``; see the module docstring."""
    from timegrpo.metrics import grounding_metrics, nextgqa_metrics, rextime_metrics
    from timegrpo.rewards.qa import answer_letter_of
    from timegrpo.spans import temporal_iou

    if missing not in ("zero", "skip"):
        raise ValueError(f"missing must be 'zero' or 'skip', not {missing!r}")
    qids = {s.qid for s in samples}
    counts = {
        "n_annotations": len(samples),
        "n_missing_prediction": sum(s.qid not in predictions for s in samples),
        "n_unknown_qid": sum(q not in qids for q in predictions),
    }
    kept = [s for s in samples if missing == "zero" or s.qid in predictions]
    with_gt = [s for s in kept if s.windows]
    counts["n_no_gt_windows"] = len(kept) - len(with_gt)
    preds = [parse_prediction(predictions.get(s.qid), s, strict=strict, from_completion=from_completion)
             for s in with_gt]
    counts["n_scored"] = len(with_gt)
    counts["n_unparsed"] = sum(p.top1 is None for p in preds)
    metrics = grounding_metrics([temporal_iou(p.top1, s.windows) for p, s in zip(preds, with_gt)])
    if benchmark == "qvhighlights":
        metrics.update(_qvh_metrics(with_gt, preds))
        counts["n_missing_saliency"] = sum(p.saliency is None for p in preds)
    elif benchmark in ("nextgqa", "rextime"):
        truth = [answer_letter_of(s.meta.get("answer"), s.meta.get("options")) for s in with_gt]
        correct = [p.answer is not None and p.answer == t for p, t in zip(preds, truth)]
        counts["n_unparsed_answer"] = sum(p.answer is None for p in preds)
        fn = nextgqa_metrics if benchmark == "nextgqa" else rextime_metrics
        metrics.update(fn([p.top1 for p in preds], [s.windows for s in with_gt], correct))
    elif benchmark != "grounding":
        raise ValueError(f"unknown benchmark {benchmark!r}; one of: {', '.join(BENCHMARKS[1:])}")
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


def run(args: argparse.Namespace) -> int:
    from timegrpo.data.formats import load_annotations

    samples, report = load_annotations(args.annotations, args.format, on_bad=args.on_bad, durations=args.durations)
    predictions, duplicates = load_predictions(args.predictions)
    benchmark = detect_benchmark(samples, report.format) if args.benchmark == "auto" else args.benchmark
    result = score_samples(samples, predictions, benchmark=benchmark, missing=args.missing, strict=args.strict,
                           from_completion=args.from_completion)
    result.counts["n_duplicate_prediction"] = duplicates
    for kind, n in sorted(report.counts.items()):
        result.counts[f"n_annotation_{kind}"] = n
    result.counts["n_annotation_dropped"] = report.n_dropped
    table = markdown_table(result, f"{Path(args.predictions).name} vs {Path(args.annotations).name} ({benchmark})")
    if args.out_md:
        Path(args.out_md).write_text(table + "\n", encoding="utf-8")
    sys.stdout.write((json.dumps(result.flat(), indent=2) if args.json else table) + "\n")
    notes = [f"{result.counts[k]} {label}" for k, label in _NOTES if result.counts.get(k)]
    if notes:
        sys.stderr.write("timegrpo score: " + "; ".join(notes) + "\n")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("score", help="metrics of a predictions jsonl against annotations",
                              description="Metrics of a predictions jsonl against an annotation file of any "
                              "supported format (R1@m, mIoU; the official QVHighlights, NExT-GQA and ReXTime sets).")
    p.add_argument("--predictions", required=True, help="predictions jsonl (qid + pred_relevant_windows or completion)")
    p.add_argument("--annotations", required=True, help="annotation file in any supported format")
    p.add_argument("--format", default=None, help="annotation format name (default: detected from the file)")
    p.add_argument("--benchmark", default="auto", choices=BENCHMARKS,
                   help="metric set (default: from the format: qvhighlights, nextgqa, rextime or grounding)")
    p.add_argument("--json", action="store_true", help="print one JSON object keyed by metric name")
    p.add_argument("--out-md", default=None, help="also write the markdown table to this file")
    p.add_argument("--on-bad", default="clip", choices=("error", "skip", "clip"),
                   help="annotation anomaly policy passed to the reader (default: clip)")
    p.add_argument("--durations", default=None, help="durations file for formats without them (Charades-STA)")
    p.add_argument("--missing", default="zero", choices=("zero", "skip"),
                   help="annotations without a prediction: score as unparsable (zero) or leave out (skip)")
    p.add_argument("--strict", action="store_true", help="parse completions exactly as Time-R1 does")
    p.add_argument("--from-completion", action="store_true",
                   help="parse 'completion' even when 'pred_relevant_windows' is present")
    p.set_defaults(func=run)
