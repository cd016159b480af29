"""Predictions files: jsonl, one json object with a ``qid`` per line.

Written and flushed line by line (:class:`PredictionWriter`), so an interrupted run loses nothing it wrote;
:func:`read_predictions` finds the one partially written last line a kill can leave and (with ``repair``) cuts it
off, counted. Data parallelism: every rank predicts ``shard(pending, rank, world)`` into its own part file and
rank 0 merges them in annotation order (:func:`merge_predictions`). :func:`load_predictions` reads a file given
to ``timegrpo score`` (any producer: ``pred_relevant_windows`` or a raw ``completion``).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from timegrpo.evaluate.config import PredictionError


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, so a reader never sees half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _record(line: str, path: Path | str, lineno: int, fix: str) -> dict[str, Any]:
    """One line as a json object with a ``qid``; errors name the file and the line, and say ``fix``."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as err:
        raise PredictionError(f"{path} line {lineno}: not valid json ({err}); {fix}") from None
    if not isinstance(rec, dict) or "qid" not in rec:
        raise PredictionError(f"{path} line {lineno}: a prediction must be a json object with a 'qid'")
    return rec


def read_predictions(path: str | Path, *, repair: bool = False) -> tuple[list[dict[str, Any]], int]:
    """The records of a predictions jsonl and the number of partially written trailing lines (0 or 1).

    A kill while a line is being written leaves a last line without its newline; it is not returned, and
    ``repair=True`` truncates the file to its last complete line. Any other line that is not a json object
    with a ``qid`` raises, naming the file and line. A missing file has no records.
    """
    path = Path(path)
    if not path.is_file():
        return [], 0
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    partial = 1 if data[cut:].strip() else 0
    if data[cut:] and repair:
        with open(path, "r+b") as f:
            f.truncate(cut)
    fix = ("this is not an interrupted write (those only affect the last line): fix or delete the line, or rerun "
           "with --overwrite")
    records = [_record(line, path, lineno, fix)
               for lineno, line in enumerate(data[:cut].decode("utf-8").splitlines(), 1) if line.strip()]
    return records, partial


def load_predictions(path: str | Path) -> tuple[dict[str, dict[str, Any]], int]:
    """``{qid: record}`` from a jsonl (qids as str) and how many duplicated qids were ignored (first kept).

    Every line must carry ``pred_relevant_windows``, ``completion`` or ``pred_saliency_scores``.
    """
    records: dict[str, dict[str, Any]] = {}
    duplicates = 0
    try:
        lines = list(io.StringIO(Path(path).read_text(encoding="utf-8")))  # newlines as a file reads them
    except UnicodeDecodeError as err:
        raise PredictionError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); re-save it as UTF-8") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = _record(line, path, lineno, "fix or remove the line")
        if not any(k in rec for k in ("pred_relevant_windows", "completion", "pred_saliency_scores")):
            raise PredictionError(f"{path} line {lineno} (qid {rec['qid']}): needs 'pred_relevant_windows' or "
                                  "'completion' (or 'pred_saliency_scores')")
        qid = str(rec["qid"])
        if qid in records:
            duplicates += 1
            continue
        records[qid] = rec
    return records, duplicates


class PredictionWriter:
    """Appends records to a jsonl: each line one ``write`` of the whole line, flushed; fsync per batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.written = 0

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        for rec in records:
            self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            self._f.flush()
            self.written += 1
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def shard(items: Sequence[Any], rank: int, world: int) -> list[Any]:
    """Rank ``rank``'s share of ``items`` (every ``world``-th one, so ranks get near-equal, mixed shares).

    >>> shard(list(range(7)), 1, 3)
    [1, 4]
    """
    if not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank} of {world}")
    return list(items[rank::world])


def merge_predictions(target: str | Path, parts: Sequence[str | Path], order: Sequence[str]) -> list[dict[str, Any]]:
    """Fold the part files into ``target``: one record per qid (the first seen: target, then parts in order),
    sorted by ``order`` (qids not in it keep their place after those that are); written atomically, then the
    parts are deleted. Returns the merged records."""
    target = Path(target)
    seen: dict[str, dict[str, Any]] = {}
    for p in [target, *map(Path, parts)]:
        for rec in read_predictions(p)[0]:
            seen.setdefault(str(rec["qid"]), rec)
    rank = {q: i for i, q in enumerate(order)}
    merged = sorted(seen.values(), key=lambda r: rank.get(str(r["qid"]), len(rank)))
    write_atomic(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged))
    for p in parts:
        Path(p).unlink(missing_ok=True)
    return merged
