"""``data.on_bad`` for the training videos: a sample whose video cannot be read stops the run (``error``) or is
replaced in its micro-batch (``skip``/``clip``), counted, logged and listed in ``output_dir/skipped.jsonl``.

The replacement of sample ``i`` is the next sample of the annotation file, ``i + 1, i + 2, ...`` (cyclically),
whose video can be read. It depends on the data only, never on the process layout, the prefetch threads or
where a run was resumed, so every layout and a resumed run train on the same samples as an uninterrupted one
(as :class:`timegrpo.trainer.loop.DataOrder` guarantees for the order). A bad video is found when a micro-batch
first needs it; with ``num_workers`` threads that is ahead of the step that trains it.

Per step the loop logs ``skipped_samples``: the samples of the step (all processes) that were replaced. Each
process appends one line per bad sample to ``skipped.jsonl`` (``qid``, ``kind``, ``detail`` naming the video,
``index`` in the training file) when it first meets it; a sample two processes meet is listed by both, so the file is
rewritten without duplicates at the end of training.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from timegrpo.data.schema import Sample
from timegrpo.data.source import VideoSource
from timegrpo.data.video import VideoError

SKIPPED_FILE = "skipped.jsonl"


class BadVideos:
    """Frames of training samples under ``on_bad``; see the module docstring. Thread-safe."""

    def __init__(self, samples: Sequence[Sample], videos: VideoSource, on_bad: str, output_dir: str | Path,
                 source: str | None = None) -> None:
        self.samples = samples
        self.videos = videos
        self.on_bad = on_bad
        self.path = Path(output_dir) / SKIPPED_FILE
        self.source = source or "the training file"
        self.bad: dict[int, VideoError] = {}
        self._lock = threading.Lock()
        self._replaced: dict[int, int] = {}  # step -> samples replaced in it (this process)

    def load(self, indices: Sequence[int], step: int | None = None) -> tuple[list[int], dict[int, tuple]]:
        """``(indices used, {index: (frames, metadata)})`` for the samples at ``indices``; each bad one replaced
        (see the module docstring) and counted for ``step`` when given."""
        used, loaded = [], {}
        for i in indices:
            j = i
            for _ in range(len(self.samples)):
                if j not in self.bad:
                    try:
                        loaded[j] = self.videos(self.samples[j])
                        break
                    except VideoError as err:
                        self._found(j, err)
                j = (j + 1) % len(self.samples)
            else:
                raise VideoError(self.source, "unreadable_video", "no training video could be read (see "
                                 f"{self.path})")
            used.append(j)
            if j != i and step is not None:
                with self._lock:
                    self._replaced[step] = self._replaced.get(step, 0) + 1
        return used, loaded

    def usable(self, index: int) -> int:
        """The index that trains in place of ``index`` (itself when its video loads)."""
        return self.load([index])[0][0]

    def replaced(self, step: int) -> int:
        """How many samples of ``step`` this process replaced (forgotten once read)."""
        with self._lock:
            return self._replaced.pop(step, 0)

    def _found(self, index: int, err: VideoError) -> None:
        sample = self.samples[index]
        if self.on_bad == "error":
            raise VideoError(err.path, err.kind, f"{err} (qid {sample.qid} of {self.source}); set data.on_bad skip "
                             "(--data.on_bad skip) to train on the other samples and list such ones in "
                             f"{self.path}") from err
        with self._lock:
            if index in self.bad:
                return
            self.bad[index] = err
            row = {"qid": sample.qid, "kind": err.kind, "detail": str(err), "index": index}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


def dedupe_skipped(output_dir: str | Path) -> int:
    """Rewrite ``output_dir/skipped.jsonl`` with each sample once (first line kept; main process, after every
    process is done); returns how many samples it lists."""
    from timegrpo.evaluate.predictions import write_atomic

    path = Path(output_dir) / SKIPPED_FILE
    if not path.is_file():
        return 0
    rows: dict[Any, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.setdefault(row.get("index"), row)
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows.values()))
    return len(rows)
