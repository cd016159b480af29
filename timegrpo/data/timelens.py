"""Readers of the TimeLens data (Zhang et al., arXiv 2512.14698; TencentARC/TimeLens), registered in
:data:`timegrpo.data.formats.READERS` and detected by :func:`timegrpo.data.formats.detect_format`.

==================  =============================================================================================
``timelens_bench``  TimeLens-Bench json (``charades-timelens.json``, ``activitynet-timelens.json``,
                    ``qvhighlights-timelens.json``): ``{vid: {"duration", "spans": [[s, e], ...], "queries":
                    [...]}}``, span ``i`` is the window of query ``i``; qid ``{vid}_{i}``; the video is
                    ``{vid}.mp4`` in the benchmark's video folder (``videos/charades`` ...)
``timelens_100k``   TimeLens-100K jsonl: one video a line, ``{"video_path", "duration", "source", "events":
                    [{"query", "span"}, ...]}``; ``video_path`` is relative to the dataset's ``videos/`` folder
                    (``video_dir``; without one, the ``videos/`` folder beside the jsonl, TimeLens's layout); a
                    ``span`` is ``[s, e]`` or ``[[s, e], ...]``; qid ``{vid}_{k}`` (k counts that video's events
                    across the file); ``source`` in ``meta``
==================  =============================================================================================

Queries are cleaned as TimeLens's loader does before prompting (whitespace runs collapsed, then surrounding
spaces and periods stripped: ``"A man  runs."`` -> ``"A man runs"``); the text as written is kept in
``meta["query_raw"]`` when it differs. Both files hold their own durations (a ``durations=`` file fills a missing
one). TimeLens's own loader keeps a record whose video is missing (with a printed warning); here that is the
``missing_video`` anomaly under the usual policy, when ``video_dir`` is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from timegrpo.data.anomalies import RawRecord
from timegrpo.data.formats import (
    READERS,
    ReadContext,
    _dict_entries,
    _duration_for,
    _jsonl,
    _malformed,
    _resolve_video,
    _windows,
)
from timegrpo.data.schema import Sample


def clean_query(query: str) -> str:
    """The query as TimeLens prompts it: whitespace runs made one space, surrounding spaces and periods removed.

    >>> clean_query("  A man\\n opens   the door. "), clean_query("Mr. Smith waves..")
    ('A man opens the door', 'Mr. Smith waves')
    """
    return re.sub(r"\s+", " ", query).strip().strip(".").strip()


def _sample(qid: str, vid: str, video: str | None, duration: float | None, query: Any,
            windows: list[tuple[float, float]], meta: dict[str, Any]) -> Sample:
    raw = str(query)
    text = clean_query(raw)
    if text != raw:
        meta = {**meta, "query_raw": raw}
    return Sample(qid=qid, vid=vid, video=video, duration=duration, query=text, windows=windows, meta=meta)


@READERS.register("timelens_bench")
def read_timelens_bench(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """TimeLens-Bench: one sample per (span, query) pair of each video, qid ``{vid}_{i}``."""
    for vid, v in _dict_entries(path):
        try:
            spans, queries = v["spans"], v["queries"]
            dur = _duration_for(vid, v.get("duration"), ctx)
        except (KeyError, TypeError, ValueError) as err:
            yield _malformed(f"key {vid!r}", f"bad entry: {err!r}")
            continue
        if not isinstance(spans, list) or not isinstance(queries, list) or len(spans) != len(queries):
            yield _malformed(f"key {vid!r}", f"spans and queries must be lists of the same length; got "
                                             f"{type(spans).__name__} and {type(queries).__name__}")
            continue
        video = _resolve_video(vid, None, ctx)
        for i, (span, query) in enumerate(zip(spans, queries)):
            where = f"key {vid!r} #{i}"
            try:
                windows = _windows(span)
            except ValueError as err:
                yield _malformed(where, err)
                continue
            yield RawRecord(where, _sample(f"{vid}_{i}", vid, video, dur, query, windows, {}))


@READERS.register("timelens_100k")
def read_timelens_100k(path: Path, ctx: ReadContext) -> Iterator[RawRecord]:
    """TimeLens-100K: one sample per event; vid = the video file's stem."""
    per_vid: dict[str, int] = {}
    for where, d in _jsonl(path):
        if not isinstance(d, dict):
            yield _malformed(where, d if isinstance(d, Exception) else f"not a json object: {d!r:.80}")
            continue
        try:
            given = str(d["video_path"])
            events = d["events"]
            if not isinstance(events, list):
                raise ValueError(f"events is {type(events).__name__}, not a list")
            vid = Path(given).stem
            dur = _duration_for(vid, d.get("duration"), ctx)
        except (KeyError, TypeError, ValueError) as err:
            yield _malformed(where, f"bad record: {err!r}")
            continue
        video = _resolve_video(vid, given, ctx, base=path.parent / "videos")
        meta = {"source": d["source"]} if "source" in d else {}
        for j, event in enumerate(events):
            k = per_vid.get(vid, 0)
            per_vid[vid] = k + 1
            try:
                windows = _windows(event["span"])
                query = event["query"]
            except (KeyError, TypeError, ValueError) as err:
                yield _malformed(f"{where} event {j}", f"bad event: {err!r}")
                continue
            yield RawRecord(f"{where} event {j}", _sample(f"{vid}_{k}", vid, video, dur, query, windows, meta))
