"""Write samples as moment_detr jsonl or as a Hugging Face ``datasets.Dataset``.

moment_detr: one json object a line, ``qid, query, duration, vid, relevant_windows`` (what Moment-DETR,
lighthouse and our ``moment_detr`` reader take), plus ``video`` / ``video_start`` / ``video_end`` when set and
every ``meta`` key at the top level (the reader puts them back in ``meta``). A qid that is a plain integer is
written as an int, as QVHighlights does. A video under the output folder is written relative to it (the
reader resolves it against the jsonl's folder); another absolute path stays absolute.

Hugging Face: columns ``qid, vid, video, duration, query, windows, video_start, video_end`` with fixed types
and ``meta`` as a JSON string (its keys differ between datasets, so it has no fixed Arrow type).
:func:`to_hf_dataset` returns the ``Dataset`` (``push_to_hub`` it, or hand it to another trainer);
:func:`from_hf_dataset` reads one back into samples.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from timegrpo.data.schema import Sample

#: Output formats of ``timegrpo data convert``.
TARGETS = ("moment_detr", "hf")


def _qid_value(qid: str) -> int | str:
    return int(qid) if qid.isdigit() and str(int(qid)) == qid else qid


def _video_value(video: str | None, out_dir: Path) -> str | None:
    if video is None or not os.path.isabs(video):
        return video
    try:
        return Path(video).relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        return video


def to_moment_detr_record(sample: Sample, out_dir: str | Path = ".") -> dict[str, Any]:
    """One moment_detr json object (see the module docstring); ``out_dir`` is the folder of the jsonl.

    >>> s = Sample("7", "v1", None, 30.0, "a man runs", [(1.0, 4.5)], meta={"ans": "B"})
    >>> to_moment_detr_record(s)
    {'qid': 7, 'query': 'a man runs', 'duration': 30.0, 'vid': 'v1', 'relevant_windows': [[1.0, 4.5]], 'ans': 'B'}
    """
    rec: dict[str, Any] = {"qid": _qid_value(sample.qid), "query": sample.query, "duration": sample.duration,
                           "vid": sample.vid, "relevant_windows": [[float(s), float(e)] for s, e in sample.windows]}
    video = _video_value(sample.video, Path(out_dir))
    extras = {"video": video, "video_start": sample.video_start, "video_end": sample.video_end}
    rec.update({k: v for k, v in extras.items() if v is not None})
    for k, v in sample.meta.items():
        if k in rec:
            raise ValueError(f"qid {sample.qid}: meta key {k!r} clashes with a moment_detr field; rename it")
        rec[k] = v
    return rec


def write_moment_detr(samples: Iterable[Sample], path: str | Path) -> Path:
    """Write samples as moment_detr jsonl (temporary file, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for s in samples:
                f.write(json.dumps(to_moment_detr_record(s, path.parent), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def hf_features() -> Any:
    """The ``datasets.Features`` of :func:`to_hf_dataset`."""
    from datasets import Features, List, Value

    return Features({
        "qid": Value("string"), "vid": Value("string"), "video": Value("string"), "duration": Value("float64"),
        "query": Value("string"), "windows": List(List(Value("float64"))), "video_start": Value("float64"),
        "video_end": Value("float64"), "meta": Value("string"),
    })


def to_hf_dataset(samples: Sequence[Sample]) -> Any:
    """A ``datasets.Dataset`` with one row per sample (``meta`` as a JSON string)."""
    from datasets import Dataset

    rows: dict[str, list[Any]] = {k: [] for k in hf_features()}
    for s in samples:
        d = s.to_dict()
        d["meta"] = json.dumps(s.meta, ensure_ascii=False, sort_keys=True)
        for k in rows:
            rows[k].append(d[k])
    return Dataset.from_dict(rows, features=hf_features())


def from_hf_dataset(ds: Any) -> list[Sample]:
    """Samples from a dataset made by :func:`to_hf_dataset` (or any with the same columns)."""
    out = []
    for row in ds:
        row = dict(row)
        row["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
        out.append(Sample.from_dict(row))
    return out


def save_hf(samples: Sequence[Sample], out_dir: str | Path) -> Path:
    """``to_hf_dataset(samples).save_to_disk(out_dir)``; load it back with ``datasets.load_from_disk``."""
    to_hf_dataset(samples).save_to_disk(str(out_dir))
    return Path(out_dir)
