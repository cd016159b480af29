"""The one sample type every reader returns and every consumer (rewards, trainer, eval) takes.

A :class:`Sample` is one query over one video. Times are seconds relative to the (possibly cropped)
clip the model sees: when ``video_start``/``video_end`` are set, the clip is
``[video_start, video_end]`` of the source file and ``duration == video_end - video_start``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Window = tuple[float, float]


@dataclass
class Sample:
    """One query over one video.

    Attributes:
        qid: unique id of the query within its dataset (str, even when the source uses ints).
        vid: video id as the dataset names it.
        video: path of the video file, or None when the annotation alone is read.
        duration: clip length in seconds (annotated, unless stated otherwise by the reader), or None.
        query: the sentence to ground.
        windows: ground-truth ``[(start, end), ...]`` in seconds; at least one for training.
        video_start: start offset of the clip in the source file (seconds), or None.
        video_end: end offset of the clip in the source file (seconds), or None.
        meta: dataset-specific extras (``saliency_scores``, ``relevant_clip_ids``, ``options``, ``answer``, ...).

    >>> s = Sample(qid="1", vid="AO8RW", video=None, duration=33.67, query="a person is putting a book on a shelf.",
    ...            windows=[(0.0, 6.9)])
    >>> s.to_dict()["windows"]
    [[0.0, 6.9]]
    >>> Sample.from_dict(s.to_dict()) == s
    True
    """

    qid: str
    vid: str
    video: str | None
    duration: float | None
    query: str
    windows: list[Window]
    video_start: float | None = None
    video_end: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (windows as lists)."""
        out = asdict(self)
        out["windows"] = [[float(s), float(e)] for s, e in self.windows]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        return cls(
            qid=str(d["qid"]),
            vid=str(d["vid"]),
            video=d.get("video"),
            duration=None if d.get("duration") is None else float(d["duration"]),
            query=d["query"],
            windows=[(float(s), float(e)) for s, e in d.get("windows", [])],
            video_start=d.get("video_start"),
            video_end=d.get("video_end"),
            meta=dict(d.get("meta") or {}),
        )
