"""Frame sampling for Qwen2/2.5/3-VL through qwen-vl-utils (decord backend), with the time of every frame.

What is computed, for a video file and a :class:`VideoSampling`:

1. Decoding is qwen-vl-utils' own decord reader (``qwen_vl_utils.vision_process.VIDEO_READER_BACKENDS
   ["decord"]``), called directly rather than through ``fetch_video``: ``fetch_video`` picks its backend from
   the ``FORCE_QWENVL_VIDEO_READER`` environment variable read once at import (torchcodec first when
   installed) and silently falls back to torchvision when decord fails. Calling the reader keeps the backend
   fixed without touching the environment and lets a broken file raise :class:`VideoError` with its path.
   In qwen-vl-utils 0.0.14 that reader turns ``video_start``/``video_end`` (seconds) into the frame range
   ``[ceil(video_start * fps), min(floor(video_end * fps), N - 1)]``, counts ``n`` = the frames in that range,
   takes ``nframes = floor_2(clamp(n / fps * sample_rate, min_frames, max_frames, n))`` (or ``nframes``
   rounded to a multiple of 2), the indices ``round(linspace(first, last, nframes))``, and reports
   ``sample_fps = nframes / n * fps`` (what the Qwen2.5-VL processor needs as ``fps``: it places frame pairs
   ``2 / sample_fps`` seconds apart through ``second_per_grid_ts``).
2. Resizing reproduces ``fetch_video``'s rule exactly (checked against it in the tests): per-frame
   ``max_pixels = max(min(768 * f^2, total_pixels / nframes * 2), 1.05 * min_pixels)`` capped by the
   requested ``max_pixels``, f = patch size x 2, then ``smart_resize`` and a bicubic antialiased resize. The
   resize maps uint8 to uint8, so the cache stores uint8 frames and returns exactly ``fetch_video``'s
   float tensor ``(T, C, H, W)``.
3. Timestamps: frame ``k`` is at ``indices[k] / fps - clip_start`` seconds, ``clip_start = video_start or 0``,
   i.e. relative to the clip the annotation refers to (the decoder's own frame times, ``pts``, agree with this
   to a microsecond on the real test videos; ``max_pts_error`` on the result says how far they are apart).
4. Durations: ``decoded_duration = n / fps`` (the decoded clip); ``annotated_duration`` is the sample's.
   The **annotated duration is used** when there is one (ground-truth windows and the tIoU reward are in the
   annotation's time frame), else the decoded one; ``duration_source`` says which, and
   ``duration_mismatch`` is flagged beyond ``duration_tolerance`` seconds (e.g. ActivityNet's
   163.05 s annotated vs 163.67 s decoded).

:class:`FrameCache` keeps the sampled frames on disk, keyed by (absolute path, mtime, size, sampling settings,
crop), so the second epoch decodes nothing; entries are written to a temporary file and moved into place
with ``os.replace``, and an entry that fails to load (a CRC error, a truncated file) is decoded again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timegrpo.data.schema import Sample
from timegrpo.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import torch

logger = logging.getLogger(__name__)

#: Bump when what a cache entry holds changes.
CACHE_VERSION = 1
DURATION_SOURCES = ("annotation", "decoded")


class VideoError(UserError, RuntimeError):
    """A video that cannot be sampled; ``kind`` is ``missing_video``, ``empty_video``, ``unreadable_video``
    (any decoder failure, a corrupt frame included) or ``duration_mismatch`` (decoded much shorter or longer than
    annotated: :func:`check_duration`)."""

    def __init__(self, path: str, kind: str, detail: str) -> None:
        super().__init__(f"{path}: {kind}: {detail}")
        self.path = path
        self.kind = kind


@dataclass(frozen=True)
class VideoSampling:
    """How frames are sampled and sized; defaults are Time-R1's (SPEC section 1). ``None`` = library default."""

    fps: float | None = field(default=2.0, metadata={"help": "frames per second to sample (or set nframes)"})
    nframes: int | None = field(default=None, metadata={"help": "exact number of frames (rounded to even); "
                                                                 "excludes fps"})
    min_frames: int | None = field(default=None, metadata={"help": "at least this many frames with fps "
                                                                    "(library default 4)"})
    max_frames: int | None = field(default=768, metadata={"help": "at most this many frames with fps"})
    min_pixels: int | None = field(default=16 * 28 * 28, metadata={"help": "lower bound on pixels per frame"})
    max_pixels: int | None = field(default=None, metadata={"help": "upper bound on pixels per frame"})
    total_pixels: int | None = field(default=3584 * 28 * 28, metadata={"help": "pixel budget of the whole video "
                                                                              "(bounds max_pixels per frame)"})
    image_patch_size: int = field(default=14, metadata={"help": "vision patch size: 14 (Qwen2/2.5-VL), "
                                                                "16 (Qwen3-VL)"})
    duration_tolerance: float = field(default=0.5, metadata={"help": "seconds of annotated-vs-decoded "
                                                                      "duration difference flagged as mismatch"})
    max_duration_mismatch: float = field(default=0.1, metadata={"help": "decoded-vs-annotated duration "
                                                                         "difference, as a fraction of the "
                                                                         "annotated one, that makes the video "
                                                                         "bad (VideoError); 0 = never"})
    prefer_duration: str = field(default="annotation", metadata={"help": "annotation | decoded: which duration "
                                                                         "to use when both are known"})

    def __post_init__(self) -> None:
        if (self.fps is None) == (self.nframes is None):
            raise ValueError(f"set exactly one of fps and nframes (got fps={self.fps}, nframes={self.nframes})")
        for name in ("fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive, got {v}")
        if self.min_pixels and self.max_pixels and self.max_pixels < self.min_pixels:
            raise ValueError(f"max_pixels {self.max_pixels} < min_pixels {self.min_pixels}")
        if self.prefer_duration not in DURATION_SOURCES:
            raise ValueError(f"prefer_duration must be one of {DURATION_SOURCES}, got {self.prefer_duration!r}")

    def frame_settings(self) -> dict[str, Any]:
        """The fields that change the sampled frames (the cache key); the duration policy is not one."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("duration_tolerance", "prefer_duration", "max_duration_mismatch")}

    def element(self, path: str, video_start: float | None = None, video_end: float | None = None) -> dict:
        """The qwen-vl-utils video element (the ``{"type": "video", ...}`` content of a chat message)."""
        keys = ("fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels")
        ele: dict[str, Any] = {"type": "video", "video": path}
        ele.update({k: getattr(self, k) for k in keys if getattr(self, k) is not None})
        if video_start is not None:
            ele["video_start"] = float(video_start)
        if video_end is not None:
            ele["video_end"] = float(video_end)
        return ele


@dataclass
class VideoFrames:
    """Sampled frames of one (possibly cropped) video and when each was shown.

    Attributes:
        path: the video file.
        frames: ``(T, C, H, W)`` float32 in [0, 255], exactly what ``qwen_vl_utils.fetch_video`` returns.
        timestamps: ``T`` seconds, frame k at ``frame_indices[k] / video_fps - clip_start``.
        frame_indices: ``T`` decoder frame indices (absolute in the file).
        sample_fps: sampled frames per second of clip; give it to the Qwen2/2.5-VL processor as ``fps``.
        video_fps: the decoder's average fps.
        clip_frames: decoded frames in the clip range.
        video_start, video_end: the crop requested (seconds in the file), or None.
        decoded_duration: ``clip_frames / video_fps``.
        annotated_duration: the annotation's duration, or None.
        duration: the duration to use; ``duration_source`` says whether it is ``annotation`` or ``decoded``.
        duration_mismatch: ``annotated - decoded`` seconds (None without annotation); ``mismatch`` when
            ``|duration_mismatch| > duration_tolerance``.
        max_pts_error: max over frames of ``|pts - index / fps|`` (s), 0 for a constant-frame-rate file.
        from_cache: the frames came from the cache (no decoding).
    """

    path: str
    frames: torch.Tensor
    timestamps: list[float]
    frame_indices: list[int]
    sample_fps: float
    video_fps: float
    clip_frames: int
    video_start: float | None
    video_end: float | None
    decoded_duration: float
    annotated_duration: float | None
    duration: float
    duration_source: str
    duration_mismatch: float | None
    mismatch: bool
    max_pts_error: float
    from_cache: bool = False

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``video_metadata`` dict qwen-vl-utils returns (what the Qwen3-VL processor takes)."""
        return {"fps": self.video_fps, "frames_indices": list(self.frame_indices),
                "total_num_frames": self.clip_frames, "video_backend": "decord"}


def processor_video_inputs(videos: Sequence[VideoFrames], *, with_metadata: bool = False) -> tuple[list, dict]:
    """``(videos, video_kwargs)`` as ``qwen_vl_utils.process_vision_info(..., return_video_kwargs=True)`` gives.

    Qwen2/2.5-VL: ``processor(text=..., videos=videos, **video_kwargs)`` with ``fps`` per video. Qwen3-VL
    (``with_metadata=True``): ``video_kwargs`` holds ``video_metadata`` instead of ``fps``.
    """
    kwargs: dict[str, Any] = {"do_sample_frames": False}
    if with_metadata:
        kwargs["video_metadata"] = [v.metadata for v in videos]
    else:
        kwargs["fps"] = [v.sample_fps for v in videos]
    return [v.frames for v in videos], kwargs


# ----------------------------------------------------------------------------------------------- decoding


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise VideoError(path, "missing_video", "no such file")
    if not os.path.isfile(path):
        raise VideoError(path, "unreadable_video", "not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "empty_video", "the file is empty (0 bytes)")


def _decode(path: str, ele: dict) -> tuple[torch.Tensor, dict, float]:
    """Run qwen-vl-utils' decord reader; ``(uint8 (T, C, H, W), metadata, sample_fps)``."""
    from qwen_vl_utils import vision_process as vp

    try:
        return vp.VIDEO_READER_BACKENDS["decord"](ele)
    except Exception as err:  # noqa: BLE001 - every decoder failure (decord's DECORDError is not a RuntimeError)
        kind = "empty_video" if "total_frames must be" in str(err) else "unreadable_video"
        raise VideoError(path, kind, f"decord could not sample it ({type(err).__name__}: {err})") from err


def _resize(frames: torch.Tensor, sampling: VideoSampling) -> torch.Tensor:
    """``fetch_video``'s resize rule (see the module docstring) on uint8 ``(T, C, H, W)``; stays uint8."""
    from qwen_vl_utils import vision_process as vp
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as tvf

    factor = sampling.image_patch_size * vp.SPATIAL_MERGE_SIZE
    nframes, _, height, width = frames.shape
    min_pixels = sampling.min_pixels if sampling.min_pixels is not None else vp.VIDEO_MIN_TOKEN_NUM * factor**2
    total = sampling.total_pixels if sampling.total_pixels is not None else vp.MODEL_SEQ_LEN * factor**2 * 0.9
    max_pixels = max(min(vp.VIDEO_MAX_TOKEN_NUM * factor**2, total / nframes * vp.FRAME_FACTOR),
                     int(min_pixels * 1.05))
    if sampling.max_pixels is not None:
        max_pixels = min(sampling.max_pixels, max_pixels)
    h, w = vp.smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return tvf.resize(frames, [h, w], interpolation=InterpolationMode.BICUBIC, antialias=True)


def _pts_error(path: str, indices: list[int], fps: float) -> float:
    """max ``|pts - index / fps|`` over ``indices`` from decord's frame timestamps."""
    import decord

    if not indices:
        return 0.0
    ts = decord.VideoReader(path).get_frame_timestamp(indices)[:, 0]
    return float(max(abs(float(t) - i / fps) for t, i in zip(ts, indices)))


def _decode_entry(path: str, sampling: VideoSampling, video_start: float | None,
                  video_end: float | None) -> tuple[np.ndarray, dict]:
    """Decode + resize; ``(uint8 frames (T, C, H, W), info)`` with what :class:`VideoFrames` needs."""
    video, meta, sample_fps = _decode(path, sampling.element(path, video_start, video_end))
    if video.shape[0] == 0:
        raise VideoError(path, "empty_video", "no frames decoded")
    frames = _resize(video, sampling)
    fps = float(meta["fps"])
    indices = [int(i) for i in meta["frames_indices"]]
    info = {"frame_indices": indices, "video_fps": fps, "sample_fps": float(sample_fps),
            "clip_frames": int(meta["total_num_frames"]), "max_pts_error": _pts_error(path, indices, fps)}
    return frames.numpy(), info


def sample_frames(
    path: str | Path,
    sampling: VideoSampling | None = None,
    *,
    video_start: float | None = None,
    video_end: float | None = None,
    annotated_duration: float | None = None,
    cache: FrameCache | None = None,
) -> VideoFrames:
    """Sample ``path`` as the Qwen processor should receive it, with each frame's time (see module docstring).

    Raises :class:`VideoError` (with the path) for a missing, empty or undecodable file.
    """
    import torch

    sampling = sampling or VideoSampling()
    path = str(Path(path).resolve())
    _check_file(path)
    entry = cache.get(path, sampling, video_start, video_end) if cache is not None else None
    from_cache = entry is not None
    if entry is None:
        entry = _decode_entry(path, sampling, video_start, video_end)
        if cache is not None:
            cache.put(path, sampling, video_start, video_end, *entry)
    frames, info = entry
    fps = info["video_fps"]
    clip_start = float(video_start or 0.0)
    decoded = info["clip_frames"] / fps
    return VideoFrames(
        path=path, frames=torch.from_numpy(frames).float(),
        timestamps=[i / fps - clip_start for i in info["frame_indices"]],
        frame_indices=info["frame_indices"], sample_fps=info["sample_fps"], video_fps=fps,
        clip_frames=info["clip_frames"], video_start=video_start, video_end=video_end, decoded_duration=decoded,
        max_pts_error=info["max_pts_error"], from_cache=from_cache,
        **_duration_fields(decoded, annotated_duration, sampling),
    )


def sample_frames_for(sample: Sample, sampling: VideoSampling | None = None, *,
                      cache: FrameCache | None = None) -> VideoFrames:
    """:func:`sample_frames` for a :class:`Sample` (its video, crop and annotated duration)."""
    if sample.video is None:
        raise VideoError(f"<no path for qid {sample.qid}>", "missing_video",
                         "the sample has no video path; load annotations with video_dir=")
    vf = sample_frames(sample.video, sampling, video_start=sample.video_start, video_end=sample.video_end,
                       annotated_duration=sample.duration, cache=cache)
    check_duration(vf, sampling or VideoSampling(), sample.qid)
    return vf


def check_duration(vf: VideoFrames, sampling: VideoSampling, qid: str) -> None:
    """Raise :class:`VideoError` (``duration_mismatch``) when the decoded clip and the annotation disagree by more
    than ``max_duration_mismatch`` x the annotated duration (and more than ``duration_tolerance`` seconds): the
    ground truth would point at times the model never sees (a 30.7 s file annotated as 120 s, truth at 100-110 s).

    >>> vf = VideoFrames(path="v.mp4", frames=None, timestamps=[], frame_indices=[], sample_fps=2.0, video_fps=30.0,
    ...                  clip_frames=921, video_start=None, video_end=None, decoded_duration=30.7,
    ...                  **_duration_fields(30.7, 120.0, VideoSampling()), max_pts_error=0.0)
    >>> check_duration(vf, VideoSampling(), "q1")
    Traceback (most recent call last):
    ...
    timegrpo.data.video.VideoError: v.mp4: duration_mismatch: decoded 30.7 s but annotated 120 s (qid q1): ...
    """
    if vf.duration_mismatch is None or not sampling.max_duration_mismatch:
        return
    limit = max(sampling.duration_tolerance, sampling.max_duration_mismatch * float(vf.annotated_duration))
    if abs(vf.duration_mismatch) > limit:
        raise VideoError(vf.path, "duration_mismatch",
                         f"decoded {vf.decoded_duration:.1f} s but annotated {vf.annotated_duration:g} s (qid {qid}): "
                         "is it the right file? (set data.max_duration_mismatch 0 to accept such videos)")


# ----------------------------------------------------------------------------------------------- cache


class FrameCache:
    """Sampled frames on disk, one ``.npz`` per (file, mtime, size, sampling, crop); safe against kills.

    ``hits``, ``misses``, ``corrupt`` and ``writes`` count what happened since creation.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = self.corrupt = self.writes = 0

    def key(self, path: str, sampling: VideoSampling, video_start: float | None, video_end: float | None) -> str:
        """Hex digest of the absolute path, mtime (ns), size, sampling settings, crop and cache version."""
        from qwen_vl_utils import vision_process as vp

        st = os.stat(path)
        parts = {"path": str(Path(path).resolve()), "mtime_ns": st.st_mtime_ns, "size": st.st_size,
                 "sampling": sampling.frame_settings(), "video_start": video_start, "video_end": video_end,
                 "version": CACHE_VERSION, "seq_len": vp.MODEL_SEQ_LEN}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def entry_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, path: str, sampling: VideoSampling, video_start: float | None,
            video_end: float | None) -> tuple[np.ndarray, dict] | None:
        """The cached ``(frames, info)``, or None (a corrupt entry is removed and counted)."""
        import numpy as np

        entry = self.entry_path(self.key(path, sampling, video_start, video_end))
        if not entry.is_file():
            self.misses += 1
            return None
        try:
            with np.load(entry, allow_pickle=False) as z:
                frames = z["frames"]
                info = json.loads(z["info"].tobytes().decode())
            if frames.ndim != 4 or frames.dtype != np.uint8 or len(info["frame_indices"]) != frames.shape[0]:
                raise ValueError(f"bad shape {frames.shape} / dtype {frames.dtype}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            logger.warning("frame cache entry %s is corrupt (%s); decoding %s again", entry, err, path)
            self.corrupt += 1
            self.misses += 1
            entry.unlink(missing_ok=True)
            return None
        self.hits += 1
        return frames, info

    def put(self, path: str, sampling: VideoSampling, video_start: float | None, video_end: float | None,
            frames: np.ndarray, info: dict) -> Path:
        """Write an entry atomically (temporary file in the same folder, fsync, ``os.replace``)."""
        import numpy as np

        entry = self.entry_path(self.key(path, sampling, video_start, video_end))
        entry.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, frames=frames, info=np.frombuffer(json.dumps(info).encode(), dtype=np.uint8))
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.writes += 1
        return entry


# ----------------------------------------------------------------------------------------------- batches


@dataclass
class VideoReport:
    """What :func:`sample_videos` did: videos decoded / read from the cache (each (file, crop) once), samples
    skipped by kind, samples whose annotated duration disagrees with the decoded one."""

    decoded: int = 0
    cached: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    mismatches: int = 0
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_videos(
    samples: Sequence[Sample],
    sampling: VideoSampling | None = None,
    *,
    cache: FrameCache | None = None,
    on_bad: str = "error",
) -> tuple[list[tuple[Sample, VideoFrames]], VideoReport]:
    """Frames for each sample (a video shared by several samples is sampled once per crop).

    ``on_bad='error'`` raises the first :class:`VideoError`; ``'skip'`` (``'clip'`` too: a video cannot be
    clipped) drops that sample and counts it in ``report.skipped`` by kind with the path in ``examples``.
    """
    if on_bad not in ("error", "skip", "clip"):
        raise ValueError(f"on_bad must be error, skip or clip, got {on_bad!r}")
    report = VideoReport()
    out: list[tuple[Sample, VideoFrames]] = []
    memo: dict[tuple, VideoFrames | VideoError] = {}
    for s in samples:
        key = (s.video, s.video_start, s.video_end)
        if key not in memo:
            try:
                memo[key] = first = sample_frames_for(s, sampling, cache=cache)
                report.cached += first.from_cache
                report.decoded += not first.from_cache
            except VideoError as err:
                if on_bad == "error":
                    raise VideoError(err.path, err.kind, f"{err} (qid {s.qid}); use on_bad='skip' to "
                                                         "drop such samples and count them") from err
                memo[key] = err
        got = memo[key]
        if isinstance(got, VideoError):
            report.skipped[got.kind] = report.skipped.get(got.kind, 0) + 1
            if len(report.examples) < 5:
                report.examples.append(f"qid {s.qid}: {got}")
            continue
        vf = _with_annotation(got, s.duration, sampling or VideoSampling())
        report.mismatches += vf.mismatch
        out.append((s, vf))
    return out, report


def _with_annotation(vf: VideoFrames, annotated: float | None, sampling: VideoSampling) -> VideoFrames:
    """``vf`` re-stated against another sample's annotated duration (same video and crop)."""
    if annotated == vf.annotated_duration:
        return vf
    return VideoFrames(**{**vf.__dict__, **_duration_fields(vf.decoded_duration, annotated, sampling)})


def _duration_fields(decoded: float, annotated: float | None, sampling: VideoSampling) -> dict[str, Any]:
    """The duration to use, where it comes from, and the annotated-vs-decoded mismatch."""
    mismatch = None if annotated is None else float(annotated) - decoded
    use = annotated is not None and sampling.prefer_duration == "annotation"
    return {"annotated_duration": annotated, "duration": float(annotated) if use else decoded,
            "duration_source": "annotation" if use else "decoded", "duration_mismatch": mismatch,
            "mismatch": mismatch is not None and abs(mismatch) > sampling.duration_tolerance}
