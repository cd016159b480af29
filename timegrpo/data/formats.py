"""One reader per annotation format, looked up by name in :data:`READERS` or detected from the file.

Every reader turns a file into :class:`~timegrpo.data.anomalies.RawRecord` s with the file's values as they
are (seconds, relative to the clip the model sees); :func:`load_annotations` then counts the anomalies and
applies the ``on_bad`` policy (see :mod:`timegrpo.data.anomalies`). The formats (real files of each are
described in ``../shared/data/README.md``):

==================  =============================================================================================
``charades_sta``    ``vid start end##query`` lines (Gao et al. release); durations from ``Charades_v1_*.csv``
                    ``length`` (found beside the txt or in its parent folder, or ``durations=``, which also
                    takes a json such as VSLNet's ``charades.json``)
``activitynet``     ``{vid: {duration, timestamps: [[s, e]...], sentences: [...]}}``: ActivityNet Captions and
                    the Time-R1 Charades json (same shape); qid ``{vid}_{i}``
``tacos_2dtan``     2D-TAN TACoS json: ``{"sXX-dYY.avi": {timestamps (frame indices), sentences, fps,
                    num_frames}}``; seconds = frame / fps, duration = num_frames / fps; qid ``{vid}_{i}``
``moment_detr``     jsonl ``qid, query, duration, vid, relevant_windows`` (QVHighlights, lighthouse Charades /
                    ActivityNet / TACoS, our synthetic set); every other key goes to ``meta``
``rextime``         ``moment_detr`` plus ``ans`` (the answer letter, in ``meta["answer"]``)
``time_r1``         list of ``{video, duration, timestamp, sentence, qid, video_start, video_end, difficulty, pred}``
``tvgbench``        list of ``{path, question, answer "s-e", start, end, duration, bins: {dataset}, ...}``
``nextgqa``         ``gsub_{split}.json`` windows joined with ``{split}.csv`` questions on (video_id, qid);
                    either file may be given, the other is found beside it; qid ``{video_id}_{qid}``
``timelens_bench``  TimeLens-Bench json ``{vid: {duration, spans, queries}}`` (:mod:`timegrpo.data.timelens`)
``timelens_100k``   TimeLens-100K jsonl ``{video_path, duration, source, events: [{query, span}]}`` (same module)
==================  =============================================================================================

Video paths: with ``video_dir`` a sample's video is looked up there (the record's own path, its base name,
or ``{vid}{ext}``; an absolute path in the record that exists is also taken, as written files such as curriculum
selections carry) and a missing file is the ``missing_video`` anomaly; without it, a path written in the
record is kept (``moment_detr`` resolves a relative ``video`` against the jsonl's folder, the convention of
the files we write; Time-R1 paths are relative to that project's root and are kept verbatim).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from timegrpo.data.anomalies import AnnotationError, AnomalyReport, RawRecord, validate
from timegrpo.data.schema import Sample
from timegrpo.registry import Registry

T = TypeVar("T")

#: A reader: ``(path, context) -> records``.
Reader = Callable[[Path, "ReadContext"], Iterator[RawRecord]]

#: Readers by format name.
READERS: Registry[Reader] = Registry("annotation format")

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


@dataclass
class ReadContext:
    """What a reader may use besides its file."""

    durations: dict[str, float] | None = None
    video_dir: Path | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- helpers


def _num(x: Any) -> float:
    """A finite float from a json/csv value; raises ValueError otherwise."""
    if isinstance(x, bool) or x is None:
        raise ValueError(f"not a number: {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"not finite: {x!r}")
    return v


def _windows(raw: Any) -> list[tuple[float, float]]:
    """``[[s, e], ...]`` (or a single ``[s, e]``) as float pairs; raises ValueError on any other shape."""
    if raw is None:
        return []
    if isinstance(raw, (list, tuple)) and len(raw) == 2 and not isinstance(raw[0], (list, tuple)):
        raw = [raw]
    out = []
    for w in raw:
        if not isinstance(w, (list, tuple)) or len(w) < 2:
            raise ValueError(f"window {w!r} is not [start, end]")
        out.append((_num(w[0]), _num(w[1])))
    return out


def _opt_num(x: Any) -> float | None:
    return None if x is None else _num(x)


def _malformed(where: str, err: Exception | str) -> RawRecord:
    return RawRecord(where, None, [("malformed", str(err))])


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid json ({e})") from None


def _resolve_video(vid: str, given: str | None, ctx: ReadContext, base: Path | None = None) -> str | None:
    """The video path of a record (see the module docstring); may not exist (validation counts that)."""
    if ctx.video_dir is not None:
        cands: list[Path] = []
        if given:
            g = Path(given)
            if not g.is_absolute():
                cands.append(ctx.video_dir / g)
            cands.append(ctx.video_dir / g.name)
            cands += [g] if g.is_absolute() else []
        else:
            cands += [ctx.video_dir / vid] if Path(vid).suffix.lower() in VIDEO_EXTS else []
            cands += [ctx.video_dir / f"{vid}{ext}" for ext in VIDEO_EXTS]
        return str(next((c for c in cands if c.is_file()), cands[0]))
    if given and base is not None and not Path(given).is_absolute():
        return str((base / given).resolve())
    return given


def _duration_for(vid: str, own: Any, ctx: ReadContext) -> float | None:
    if own is not None:
        return _num(own)
    if ctx.durations is not None:
        return ctx.durations.get(vid)
    return None


def load_durations(path: str | Path) -> dict[str, float]:
    """Video durations (seconds) by vid from a Charades csv (``id``, ``length``), any csv with
    ``vid|video_id|id`` and ``duration|length`` columns, or a json ``{vid: seconds}`` /
    ``{vid: {"duration": seconds, ...}}`` (VSLNet ``charades.json``, ActivityNet-style files)."""
    path = Path(path)
    out: dict[str, float] = {}
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            key = next((c for c in ("vid", "video_id", "id") if c in cols), None)
            val = next((c for c in ("duration", "length") if c in cols), None)
            if key is None or val is None:
                raise ValueError(f"{path}: a durations csv needs an id column (vid/video_id/id) and "
                                 f"duration/length; found {cols}")
            for row in reader:
                if row[val] not in ("", None):
                    out[row[key]] = _num(row[val])
        return out
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a durations json must map vid -> seconds or vid -> {{duration: ...}}")
    for vid, v in data.items():
        out[vid] = _num(v["duration"] if isinstance(v, dict) else v)
    return out


# ----------------------------------------------------------------------------------------------- readers


_CHARADES_LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s*##(.*)$", re.S)


def _charades_durations(path: Path, ctx: ReadContext) -> dict[str, float] | None:
    if ctx.durations is not None:
        return ctx.durations
    csvs: list[Path] = []
    for folder in (path.parent, path.parent.parent):
        csvs = csvs or sorted(folder.glob("Charades_v1_*.csv"))
    if not csvs:
        ctx.notes.append(f"no durations: no Charades_v1_*.csv beside {path.name} or in its parent folder; "
                         "pass durations=/--durations")
        return None
    out: dict[str, float] = {}
    for c in csvs:
        out.update(load_durations(c))
    ctx.notes.append("durations from " + ", ".join(c.name for c in csvs))
    return out


@READERS.register("charades_sta")
def read_charades_sta(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """Charades-STA txt: ``vid start end##query``; qid ``{vid}_{k}`` (k-th line of that video)."""
    durations = _charades_durations(path, ctx)
    per_vid: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            where = f"line {lineno}"
            m = _CHARADES_LINE.match(line)
            if m is None:
                yield _malformed(where, f"not 'vid start end##query': {line[:80]!r}")
                continue
            vid, s, e, query = m.groups()
            try:
                window = (_num(s), _num(e))
            except ValueError as err:
                yield _malformed(where, err)
                continue
            k = per_vid.get(vid, 0)
            per_vid[vid] = k + 1
            dur = durations.get(vid) if durations is not None else None
            yield RawRecord(where, Sample(qid=f"{vid}_{k}", vid=vid, video=_resolve_video(vid, None, ctx),
                                          duration=dur, query=query, windows=[window]))


def _dict_entries(path: Path) -> Iterator[tuple[str, Any]]:
    data = _load_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a json object keyed by video id")
    yield from data.items()


@READERS.register("activitynet")
def read_activitynet(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """``{vid: {duration, timestamps, sentences}}``: one sample per (timestamp, sentence) pair."""
    for vid, v in _dict_entries(path):
        try:
            ts, sents = v["timestamps"], v["sentences"]
            dur = _duration_for(vid, v.get("duration"), ctx)
        except (KeyError, TypeError, ValueError) as err:
            yield _malformed(f"key {vid!r}", f"bad entry: {err!r}")
            continue
        if len(ts) != len(sents):
            yield _malformed(f"key {vid!r}", f"{len(ts)} timestamps but {len(sents)} sentences")
            continue
        video = _resolve_video(vid, None, ctx)
        for i, (w, q) in enumerate(zip(ts, sents)):
            where = f"key {vid!r} #{i}"
            try:
                windows = _windows([w])
            except ValueError as err:
                yield _malformed(where, err)
                continue
            yield RawRecord(where, Sample(qid=f"{vid}_{i}", vid=vid, video=video, duration=dur, query=str(q),
                                          windows=windows))


@READERS.register("tacos_2dtan")
def read_tacos_2dtan(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """2D-TAN TACoS json: frame-index windows divided by ``fps``; vid is the key without ``.avi``."""
    for key, v in _dict_entries(path):
        vid = Path(key).stem if Path(key).suffix.lower() in VIDEO_EXTS else key
        try:
            fps = _num(v["fps"])
            n_frames = _num(v["num_frames"])
            ts, sents = v["timestamps"], v["sentences"]
        except (KeyError, TypeError, ValueError) as err:
            yield _malformed(f"key {key!r}", f"bad entry: {err!r}")
            continue
        if len(ts) != len(sents) or fps <= 0:
            yield _malformed(f"key {key!r}", f"{len(ts)} timestamps, {len(sents)} sentences, fps {fps}")
            continue
        video = _resolve_video(vid, key if ctx.video_dir else None, ctx)
        for i, (w, q) in enumerate(zip(ts, sents)):
            where = f"key {key!r} #{i}"
            try:
                (fs, fe), = _windows([w])
            except ValueError as err:
                yield _malformed(where, err)
                continue
            yield RawRecord(where, Sample(qid=f"{vid}_{i}", vid=vid, video=video, duration=n_frames / fps,
                                          query=str(q), windows=[(fs / fps, fe / fps)],
                                          meta={"fps": fps, "frame_window": [fs, fe]}))


def _jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"line {lineno}", json.loads(line)
            except json.JSONDecodeError as err:
                yield f"line {lineno}", err


_MDETR_KEYS = {"qid", "query", "duration", "vid", "relevant_windows", "video", "video_start", "video_end"}


def _moment_detr_records(path: Path, ctx: ReadContext, answer_key: str | None) -> Iterator[RawRecord]:
    for where, d in _jsonl(path):
        if not isinstance(d, dict):
            yield _malformed(where, d if isinstance(d, Exception) else f"not a json object: {d!r:.80}")
            continue
        try:
            vid = str(d["vid"])
            meta = {k: v for k, v in d.items() if k not in _MDETR_KEYS}
            if answer_key is not None and answer_key in meta:
                meta["answer"] = meta.pop(answer_key)
            sample = Sample(qid=str(d["qid"]), vid=vid,
                            video=_resolve_video(vid, d.get("video"), ctx, base=path.parent),
                            duration=_duration_for(vid, d.get("duration"), ctx), query=str(d["query"]),
                            windows=_windows(d.get("relevant_windows")),
                            video_start=_opt_num(d.get("video_start")), video_end=_opt_num(d.get("video_end")),
                            meta=meta)
        except (KeyError, TypeError, ValueError) as err:
            yield _malformed(where, f"bad record: {err!r}")
            continue
        yield RawRecord(where, sample)


@READERS.register("moment_detr")
def read_moment_detr(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """Moment-DETR / lighthouse jsonl; extra keys (saliency_scores, relevant_clip_ids, ...) go to ``meta``."""
    return _moment_detr_records(path, ctx, None)


@READERS.register("rextime")
def read_rextime(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """ReXTime jsonl: moment_detr fields plus ``ans`` (A-D), kept as ``meta["answer"]``."""
    return _moment_detr_records(path, ctx, "ans")


def _list_items(path: Path) -> Iterator[tuple[int, Any]]:
    data = _load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a json list")
    yield from enumerate(data)


@READERS.register("time_r1")
def read_time_r1(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """Time-R1 training list; vid = video file stem; ``difficulty``, ``pred`` and the qid's source in meta."""
    for i, d in _list_items(path):
        where = f"item {i}"
        try:
            video = str(d["video"])
            vid = Path(video).stem
            qid = str(d["qid"])
            parts = qid.split("|")
            meta = {k: d[k] for k in ("difficulty", "pred") if k in d}
            if len(parts) >= 3:
                meta["source"] = parts[1]
            sample = Sample(qid=qid, vid=vid, video=_resolve_video(vid, video, ctx),
                            duration=_duration_for(vid, d.get("duration"), ctx), query=str(d["sentence"]),
                            windows=_windows(d["timestamp"]), video_start=_opt_num(d.get("video_start")),
                            video_end=_opt_num(d.get("video_end")), meta=meta)
        except (KeyError, TypeError, ValueError) as err:
            yield _malformed(where, f"bad item: {err!r}")
            continue
        yield RawRecord(where, sample)


_ANSWER_SPAN = re.compile(r"^\s*([\d.]+)\s*-\s*([\d.]+)\s*$")


@READERS.register("tvgbench")
def read_tvgbench(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """TVGBench list: ``answer`` is ``"s-e"``; ``start``/``end`` are the clip offsets; qid = list index;
    ``meta["dataset"]`` from ``bins.dataset`` (present on all items, unlike ``dataset_name``)."""
    for i, d in _list_items(path):
        where = f"item {i}"
        try:
            m = _ANSWER_SPAN.match(str(d["answer"]))
            if m is None:
                raise ValueError(f"answer {d['answer']!r} is not 'start-end'")
            video = str(d["path"])
            vid = Path(video).stem
            bins = d.get("bins") or {}
            meta = {k: d[k] for k in ("question_type", "qsemtype", "source", "bins") if k in d}
            meta["dataset"] = bins.get("dataset", d.get("dataset_name"))
            sample = Sample(qid=str(i), vid=vid, video=_resolve_video(vid, video, ctx),
                            duration=_duration_for(vid, d.get("duration"), ctx), query=str(d["question"]),
                            windows=[(_num(m.group(1)), _num(m.group(2)))], video_start=_opt_num(d.get("start")),
                            video_end=_opt_num(d.get("end")), meta=meta)
        except (KeyError, TypeError, ValueError) as err:
            yield _malformed(where, f"bad item: {err!r}")
            continue
        yield RawRecord(where, sample)


def _nextgqa_pair(path: Path) -> tuple[Path, Path]:
    """(gsub json, csv) for a NExT-GQA split given either one."""
    if path.suffix.lower() == ".json":
        split = path.stem[len("gsub_"):] if path.stem.startswith("gsub_") else path.stem
        gsub, table = path, path.with_name(f"{split}.csv")
    else:
        gsub, table = path.with_name(f"gsub_{path.stem}.json"), path
    for p in (gsub, table):
        if not p.is_file():
            raise FileNotFoundError(f"NExT-GQA needs gsub_<split>.json and <split>.csv side by side; {p} is missing")
    return gsub, table


@READERS.register("nextgqa")
def read_nextgqa(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """NExT-GQA: csv questions (a0..a4 in ``meta["options"]``, answer text and index) joined with the
    gsub windows; a csv row without windows is ``no_windows``, a window entry without a csv row is
    ``missing_question``."""
    gsub_path, csv_path = _nextgqa_pair(path)
    gsub = _load_json(gsub_path)
    ctx.notes.append(f"questions from {csv_path.name}, windows from {gsub_path.name}")
    used: set[tuple[str, str]] = set()
    with open(csv_path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.DictReader(f), 2):
            where = f"{csv_path.name} line {lineno}"
            try:
                vid, q = row["video_id"], row["qid"]
                g = gsub.get(vid) or {}
                loc = (g.get("location") or {}).get(q)
                options = [row[f"a{k}"] for k in range(5)]
                meta = {"options": options, "answer": row["answer"],
                        "answer_idx": options.index(row["answer"]) if row["answer"] in options else None,
                        "type": row.get("type"), "fps": g.get("fps"), "frame_count": int(row["frame_count"])}
                sample = Sample(qid=f"{vid}_{q}", vid=vid, video=_resolve_video(vid, None, ctx),
                                duration=_duration_for(vid, g.get("duration"), ctx), query=row["question"],
                                windows=_windows(loc), meta=meta)
            except (KeyError, TypeError, ValueError) as err:
                yield _malformed(where, f"bad row: {err!r}")
                continue
            used.add((vid, q))
            yield RawRecord(where, sample)
    for vid, g in gsub.items():
        for q in (g.get("location") or {}):
            if (vid, q) not in used:
                yield RawRecord(f"{gsub_path.name} key {vid!r} q {q}", None,
                                [("missing_question", f"windows for question {q} of {vid} but no csv row")])


# ----------------------------------------------------------------------------------------------- detection


def _detect_json(path: Path) -> str | None:
    data = _load_json(path)
    if isinstance(data, list):
        first = next((x for x in data if isinstance(x, dict)), {})
        if {"answer", "question", "path"} <= first.keys():
            return "tvgbench"
        if {"timestamp", "sentence"} <= first.keys():
            return "time_r1"
        return None
    if isinstance(data, dict) and data:
        first = next((v for v in data.values() if isinstance(v, dict)), {})
        if {"timestamps", "sentences"} <= first.keys():
            return "tacos_2dtan" if {"fps", "num_frames"} <= first.keys() else "activitynet"
        if "location" in first:
            return "nextgqa"
        if {"spans", "queries"} <= first.keys():
            return "timelens_bench"
    return None


def _detect_jsonl(path: Path) -> str | None:
    for _, d in _jsonl(path):
        if not isinstance(d, dict):
            return None
        if "pred_relevant_windows" in d:
            raise ValueError(f"{path} holds predictions (pred_relevant_windows), not annotations")
        if "ans" in d and "relevant_windows" in d:
            return "rextime"
        if {"qid", "query", "vid"} <= d.keys():
            return "moment_detr"
        if {"video_path", "events"} <= d.keys():
            return "timelens_100k"
        return None
    return None


def _detect_text(path: Path) -> str | None:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return "charades_sta" if _CHARADES_LINE.match(line.rstrip("\r\n")) else None
    return None


def _detect_csv(path: Path) -> str | None:
    with open(path, newline="", encoding="utf-8") as f:
        cols = set(next(csv.reader(f), []))
    if {"video_id", "qid", "question", "a0"} <= cols:
        return "nextgqa"
    if {"id", "length"} <= cols:
        raise ValueError(f"{path} is a Charades metadata (durations) file, not annotations; "
                         "pass it as durations=/--durations with a charades_sta txt")
    return None


def detect_format(path: str | Path) -> str:
    """The :data:`READERS` name for ``path``, sniffed from its extension and first record(s).

    Raises ValueError (listing the known formats) when nothing matches.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    sniff = {".json": _detect_json, ".jsonl": _detect_jsonl, ".txt": _detect_text, ".csv": _detect_csv}
    fn = sniff.get(path.suffix.lower())
    name = fn(path) if fn is not None else None
    if name is None:
        raise ValueError(f"cannot tell the annotation format of {path}; pass format=/--format, one of: "
                         + ", ".join(READERS.names()))
    return name


def load_annotations(
    path: str | Path,
    format: str | None = None,
    *,
    on_bad: str = "error",
    durations: str | Path | dict[str, float] | None = None,
    video_dir: str | Path | None = None,
    drop_duplicates: bool = False,
) -> tuple[list[Sample], AnomalyReport]:
    """Read an annotation file into samples and an :class:`AnomalyReport`.

    Args:
        path: the annotation file.
        format: a :data:`READERS` name; detected from the file when None.
        on_bad: ``error`` | ``skip`` | ``clip`` (see :mod:`timegrpo.data.anomalies`).
        durations: a durations file (csv/json, see :func:`load_durations`) or a ``{vid: seconds}`` dict, used
            where a record has no duration (always for ``charades_sta``, which otherwise looks for
            ``Charades_v1_*.csv`` beside the txt).
        video_dir: folder of the videos; when given, sample paths point there and missing files are counted.
        drop_duplicates: also drop exact duplicate records (same vid, query, windows), counted as dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    if isinstance(durations, (str, Path)):
        durations = _as_annotation_error(Path(durations), lambda: load_durations(durations))
    name = format or _as_annotation_error(path, lambda: detect_format(path))
    reader = READERS.get(name)
    ctx = ReadContext(durations=durations, video_dir=None if video_dir is None else Path(video_dir))
    report = AnomalyReport(format=name, path=str(path))
    records = _as_annotation_error(path, lambda: list(_check_videos(reader(path, ctx), ctx)))
    _check_any_readable(records, path, name, format)
    report.notes.extend(ctx.notes)
    samples = validate(records, report, on_bad=on_bad, drop_duplicates=drop_duplicates)
    return samples, report


def _as_annotation_error(path: Path, read: Callable[[], T]) -> T:
    """``read()``, with a file that cannot be read as text, or is not the kind of file expected, reported as
    an :class:`AnnotationError` naming the file (bad records are not errors here: readers count them)."""
    try:
        return read()
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); re-save the file as "
                              "UTF-8") from None
    except (ValueError, csv.Error) as err:
        raise AnnotationError(str(err) if str(path) in str(err) else f"{path}: {err}") from None


def _check_any_readable(records: list[RawRecord], path: Path, name: str, given: str | None) -> None:
    """A file with records none of which parse is the wrong format (or not an annotation file): an error
    under every policy, never "0 samples" (the reader would count every record as malformed)."""
    if not records or any(r.sample is not None for r in records):
        return
    first = next((f"{r.where}: {r.problems[0][1]}" for r in records if r.problems), "")
    hint = ""
    if given is not None:
        try:
            detected = detect_format(path)
        except (ValueError, OSError):
            detected = None
        hint = (f"; the file looks like {detected!r}: pass --format {detected} or leave --format out"
                if detected and detected != given else "; check --format (leave it out to detect it)")
    raise AnnotationError(f"{path}: none of its {len(records)} records could be read as {name!r} "
                          f"(first: {first}){hint}")


def _check_videos(records: Iterator[RawRecord], ctx: ReadContext) -> Iterator[RawRecord]:
    """Add ``missing_video`` to records whose video is not on disk, when a ``video_dir`` was given."""
    exists: dict[str, bool] = {}
    for rec in records:
        s = rec.sample
        if ctx.video_dir is not None and s is not None and not _is_file(s.video, exists):
            rec.problems.append(("missing_video", f"no video file for {s.vid!r} in {ctx.video_dir}"))
        yield rec


def _is_file(path: str | None, memo: dict[str, bool]) -> bool:
    if path is None:
        return False
    if path not in memo:
        memo[path] = Path(path).is_file()
    return memo[path]


# The TimeLens readers live in their own module (this one is near its size limit); importing it registers them.
from timegrpo.data import timelens as _timelens  # noqa: E402,F401
