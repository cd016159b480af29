"""Anomaly detection and the one ``on_bad`` policy shared by every annotation reader.

Readers turn a file into :class:`RawRecord` s (a :class:`~timegrpo.data.schema.Sample` exactly as the file
says, plus where it came from). :func:`validate` then checks every record, counts each anomaly kind in an
:class:`AnomalyReport` and applies the policy:

* ``error`` (default): nothing is changed; if any *bad* anomaly is found, :class:`AnnotationError` is raised
  after the whole file is scanned, naming the file, the first offending records (line/key and qid), the
  counts, and the fix (``on_bad='skip'`` or ``'clip'``; on the command line ``--on-bad skip|clip``).
* ``skip``: a sample with any bad anomaly is dropped.
* ``clip``: windows are clamped into ``[0, duration]`` (``negative_start`` -> start 0, ``window_past_duration``
  -> end = duration). What a clamp cannot repair is dropped, exactly as under ``skip``: a window with
  ``start > end`` (``start_after_end``: we do not guess whether the bounds were swapped or one is a typo),
  a ``zero_length`` window, a window that starts at or after the end of the video (``start_past_duration``),
  an empty query, a missing duration, a duplicated qid, a record that does not parse, a missing video file.
  A window that becomes empty after clamping is dropped with the sample (counted as ``zero_length_after_clip``).

A sample with several windows is kept or dropped as a whole. Every dropped sample is counted in
``report.dropped`` under the first bad kind it has (in :data:`BAD_KINDS` order) and every clamped window in
``report.clipped``; ``report.counts`` always holds the raw counts of the file, whatever the policy.

*Benign* kinds are counted and never dropped: ``whitespace_query`` (the query is stripped),
``duplicate`` (another record has the same vid, verbatim query and windows: several annotators wrote the same
sentence for the same segment; official benchmarks keep them, so we do too unless ``drop_duplicates``),
``repeated_query`` (same vid and case-insensitive query, any windows), ``no_windows`` (e.g. a test release
without ground truth), ``window_past_duration_over_1s`` (the subset of ``window_past_duration`` that runs past
the end by more than a second). Window kinds count windows; the other kinds count records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from timegrpo.data.schema import Sample
from timegrpo.errors import UserError

#: Policies for bad records.
POLICIES = ("error", "skip", "clip")

#: Kinds that make a record bad (subject to ``on_bad``), in the order used to name why a sample was dropped.
BAD_KINDS = (
    "malformed",
    "missing_question",
    "empty_query",
    "missing_duration",
    "nonpositive_duration",
    "absurd_duration",
    "duplicate_qid",
    "bad_clip_ids",
    "missing_video",
    "start_after_end",
    "zero_length",
    "start_past_duration",
    "negative_start",
    "window_past_duration",
    "zero_length_after_clip",
)
#: A duration beyond this (seconds, 24 h) is a unit or data error (milliseconds, frame counts), not a video.
MAX_DURATION = 24 * 3600.0

#: Bad kinds that ``on_bad='clip'`` repairs by clamping the window into ``[0, duration]``.
CLIPPABLE_KINDS = ("negative_start", "window_past_duration")
#: Kinds counted for information only; they never drop a sample (``duplicate`` does with ``drop_duplicates``).
BENIGN_KINDS = ("whitespace_query", "duplicate", "repeated_query", "no_windows", "window_past_duration_over_1s")

_MAX_EXAMPLES = 3

#: Comparisons of times against 0 and the duration tolerate this much (seconds): float noise such as an end of
#: 70.29 against a duration stored as 70.28999999999999 is not an anomaly (and is left untouched).
TIME_EPS = 1e-6


class AnnotationError(UserError, ValueError):
    """A bad annotation file or record under ``on_bad='error'``; the message names file, record and fix.

    ``report`` is the :class:`AnomalyReport` of the whole file (counts of every kind), when available.
    """

    def __init__(self, message: str, report: AnomalyReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class RawRecord:
    """One record as a reader parsed it, before validation.

    Attributes:
        where: where it is in the file, for messages (``"line 17"``, ``"key 'v_abc' #3"``).
        sample: the sample with the file's values, or None when the record could not be parsed.
        problems: ``(kind, detail)`` pairs the reader itself found (``malformed``, ``missing_question``).
    """

    where: str
    sample: Sample | None
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class AnomalyReport:
    """What a reader found in a file and what the policy did about it.

    Attributes:
        format: the reader's name.
        path: the file read.
        policy: ``error``, ``skip`` or ``clip``.
        records: records read from the file (queries, parsed or not).
        bad_records: records with at least one kind subject to ``on_bad`` (a record can have several).
        kept: samples returned.
        counts: raw count per anomaly kind (windows for window kinds, records otherwise), zero kinds omitted.
        dropped: samples dropped, by the first bad kind each had.
        clipped: windows clamped under ``clip``, by kind.
        examples: up to three ``where (qid): detail`` strings per kind.
        dropped_records: every dropped record: ``{"qid", "where", "kind", "detail"}`` (qid None when the record
            could not be parsed), so a run can list what it left out, not only count it.
        notes: anything else the reader wants said (where durations came from, ...).
    """

    format: str
    path: str
    policy: str = "error"
    records: int = 0
    bad_records: int = 0
    kept: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dropped_records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def bad_counts(self) -> dict[str, int]:
        """Counts of the kinds that are subject to ``on_bad``."""
        return {k: v for k, v in self.counts.items() if k in BAD_KINDS}

    def add(self, kind: str, where: str, detail: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n
        ex = self.examples.setdefault(kind, [])
        if len(ex) < _MAX_EXAMPLES:
            ex.append(f"{where}: {detail}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "policy": self.policy,
            "records": self.records,
            "bad_records": self.bad_records,
            "kept": self.kept,
            "dropped_total": self.n_dropped,
            "anomalies": dict(sorted(self.counts.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "clipped": dict(sorted(self.clipped.items())),
            "examples": dict(sorted(self.examples.items())),
            "notes": list(self.notes),
        }


@dataclass
class _Issue:
    kind: str
    detail: str
    window: int | None = None  # index of the window the issue is about


def _fmt(x: float) -> str:
    return f"{x:g}"


def _window_issues(sample: Sample) -> list[_Issue]:
    """Issues of each window of ``sample`` against ``[0, duration]``."""
    out: list[_Issue] = []
    d = sample.duration
    for i, (s, e) in enumerate(sample.windows):
        w = f"window [{_fmt(s)}, {_fmt(e)}]"
        if not (math.isfinite(s) and math.isfinite(e)):
            out.append(_Issue("malformed", f"{w} is not finite", i))
            continue
        if s > e + TIME_EPS:
            out.append(_Issue("start_after_end", f"{w} has start > end", i))
        elif abs(e - s) <= TIME_EPS:
            out.append(_Issue("zero_length", f"{w} has zero length", i))
        if s < -TIME_EPS:
            out.append(_Issue("negative_start", f"{w} starts before 0", i))
        if d is not None and d > 0:
            if s >= d - TIME_EPS:
                out.append(_Issue("start_past_duration", f"{w} starts at/after the end ({_fmt(d)} s)", i))
            if e > d + TIME_EPS:
                out.append(_Issue("window_past_duration", f"{w} ends after duration {_fmt(d)} s", i))
                if e > d + 1.0:
                    out.append(_Issue("window_past_duration_over_1s", f"{w} ends > 1 s after {_fmt(d)} s", i))
    return out


def _sample_issues(sample: Sample) -> list[_Issue]:
    out: list[_Issue] = []
    q = sample.query
    if q != q.strip():
        out.append(_Issue("whitespace_query", f"query {q!r} has leading/trailing whitespace"))
    if not q.strip():
        out.append(_Issue("empty_query", "query is empty"))
    d = sample.duration
    if d is None:
        out.append(_Issue("missing_duration", f"no duration for video {sample.vid!r}"))
    elif not math.isfinite(d) or d <= 0:
        out.append(_Issue("nonpositive_duration", f"duration {d!r} is not positive"))
    elif d > MAX_DURATION:
        out.append(_Issue("absurd_duration", f"duration {d:g} s is over 24 h (milliseconds or frames?)"))
    if not sample.windows:
        out.append(_Issue("no_windows", "no ground-truth window"))
    return out + _clip_id_issues(sample) + _window_issues(sample)


#: Seconds per saliency clip in QVHighlights-style ``relevant_clip_ids`` (the official ``clip_length``).
CLIP_SECONDS = 2.0


def _clip_id_issues(sample: Sample) -> list[_Issue]:
    """QVHighlights saliency labels: every ``relevant_clip_ids`` entry an integer clip of the video
    (``0 <= id < int(duration / 2)``), one ``saliency_scores`` row per id."""
    ids = sample.meta.get("relevant_clip_ids")
    if ids is None:
        return []
    d = sample.duration
    n_clips = int(d / CLIP_SECONDS) if d is not None and math.isfinite(d) and d > 0 else None
    bad = [i for i in ids if not isinstance(i, int) or i < 0 or (n_clips is not None and i >= n_clips)]
    if bad:
        return [_Issue("bad_clip_ids", f"relevant_clip_ids {bad[:3]} not in [0, {n_clips}) (2 s clips of "
                                       f"{d} s)")]
    scores = sample.meta.get("saliency_scores")
    if scores is not None and len(scores) != len(ids):
        return [_Issue("bad_clip_ids", f"{len(ids)} relevant_clip_ids but {len(scores)} saliency_scores rows")]
    return []


def _clip(sample: Sample) -> tuple[Sample, list[str]]:
    """Clamp the windows that leave ``[0, duration]``; returns the new sample and the kinds it clamped.

    Windows inside the range (within :data:`TIME_EPS`) are returned unchanged.
    """
    d = float(sample.duration or 0.0)
    kinds: list[str] = []
    windows = []
    for s, e in sample.windows:
        if s < -TIME_EPS:
            kinds.append("negative_start")
            s = 0.0
        if e > d + TIME_EPS:
            kinds.append("window_past_duration")
            e = d
        windows.append((s, e))
    return Sample(**{**sample.__dict__, "windows": windows, "meta": dict(sample.meta)}), kinds


@dataclass
class _Seen:
    qids: set[str] = field(default_factory=set)
    exact: set[tuple[Any, ...]] = field(default_factory=set)
    loose: set[tuple[str, str]] = field(default_factory=set)


def _relation_issues(sample: Sample, seen: _Seen) -> list[_Issue]:
    """Duplicate qid / duplicate record / repeated query against the records seen so far (raw order)."""
    out: list[_Issue] = []
    exact = (sample.vid, sample.query, tuple(sample.windows))
    loose = (sample.vid, sample.query.strip().casefold())
    if sample.qid in seen.qids:
        out.append(_Issue("duplicate_qid", f"qid {sample.qid!r} appeared before"))
    if exact in seen.exact:
        out.append(_Issue("duplicate", "same vid, query and windows as an earlier record"))
    if loose in seen.loose:
        out.append(_Issue("repeated_query", "same vid and query as an earlier record"))
    seen.qids.add(sample.qid)
    seen.exact.add(exact)
    seen.loose.add(loose)
    return out


def _error_message(report: AnomalyReport) -> str:
    bad = report.bad_counts()
    lines = [f"{report.path}: {report.bad_records} bad record(s) of {report.records} ({report.format} reader); "
             "anomalies: " + ", ".join(f"{k} {v}" for k, v in sorted(bad.items()))]
    for kind in BAD_KINDS:
        for ex in report.examples.get(kind, []):
            lines.append(f"  {kind}: {ex}")
    fixable = set(bad) <= set(CLIPPABLE_KINDS)
    lines.append(
        "Fix the file, or load it with on_bad='skip' (drop such samples) or on_bad='clip' (clamp windows into "
        "[0, duration]" + ("" if fixable else "; what cannot be clamped is dropped") + "); on the command line "
        "use --on-bad skip or --on-bad clip. Every drop is counted in the report."
    )
    return "\n".join(lines)


def validate(
    records: Iterable[RawRecord],
    report: AnomalyReport,
    *,
    on_bad: str = "error",
    drop_duplicates: bool = False,
) -> list[Sample]:
    """Count the anomalies of ``records`` into ``report`` and apply ``on_bad``; returns the kept samples.

    Queries are returned stripped of surrounding whitespace under every policy (counted as
    ``whitespace_query``). Raises :class:`AnnotationError` under ``on_bad='error'`` if any bad kind occurs.
    """
    if on_bad not in POLICIES:
        raise ValueError(f"on_bad must be one of {', '.join(POLICIES)}, got {on_bad!r}")
    report.policy = on_bad
    seen = _Seen()
    kept: list[Sample] = []
    for rec in records:
        report.records += 1
        issues = [_Issue(k, d) for k, d in rec.problems]
        if rec.sample is not None:
            issues += _sample_issues(rec.sample) + _relation_issues(rec.sample, seen)
        qid = f" (qid {rec.sample.qid})" if rec.sample is not None else ""
        for iss in issues:
            report.add(iss.kind, rec.where + qid, iss.detail)
        report.bad_records += any(iss.kind in BAD_KINDS for iss in issues)
        before = dict(report.dropped)
        sample = _decide(rec.sample, issues, report, on_bad, drop_duplicates)
        if sample is not None:
            kept.append(sample)
        elif report.dropped != before:
            kind = next(k for k, v in report.dropped.items() if v != before.get(k, 0))
            detail = next((i.detail for i in issues if i.kind == kind), kind)
            report.dropped_records.append({"qid": None if rec.sample is None else rec.sample.qid,
                                           "where": rec.where, "kind": kind, "detail": detail})
    if on_bad == "error" and report.bad_counts():
        raise AnnotationError(_error_message(report), report)
    report.kept = len(kept)
    return kept


def _decide(
    sample: Sample | None, issues: list[_Issue], report: AnomalyReport, on_bad: str, drop_duplicates: bool
) -> Sample | None:
    """Apply the policy to one record: the sample to keep (stripped, maybe clamped) or None (counted)."""
    kinds = {i.kind for i in issues}
    bad = [k for k in BAD_KINDS if k in kinds]
    if sample is None or (bad and on_bad == "skip"):
        _count(report.dropped, bad[0] if bad else "malformed")
        return None
    if drop_duplicates and "duplicate" in kinds:  # an exact copy of an earlier record, under every policy
        _count(report.dropped, "duplicate")
        return None
    if bad and on_bad == "clip":
        unfixable = [k for k in bad if k not in CLIPPABLE_KINDS]
        if unfixable:
            _count(report.dropped, unfixable[0])
            return None
        sample, clamped = _clip(sample)
        if any(s >= e for s, e in sample.windows):
            report.add("zero_length_after_clip", sample.qid, "window empty after clamping")
            _count(report.dropped, "zero_length_after_clip")
            return None
        for k in clamped:
            _count(report.clipped, k)
    if sample.query != sample.query.strip():
        sample = Sample(**{**sample.__dict__, "query": sample.query.strip()})
    return sample


def _count(d: dict[str, int], kind: str) -> None:
    d[kind] = d.get(kind, 0) + 1
