"""Data pipeline figures: decoding a video from scratch vs reading its sampled frames from the frame cache.

For each video: ``cold_s`` is :func:`timegrpo.data.video.sample_frames` with no cache (decord decode, frame
selection, resize; the file's bytes are likely in the OS page cache, so this is decode time, not disk time),
``fill_s`` the first read through an empty cache (decode + cache write), and ``cached_s`` the median of
``repeats`` reads of the cached frames, each returning exactly the tensor the cold path returned (checked).
Real videos use Time-R1's sampling (2 fps, at most 768 frames, ``total_pixels = 3584*28*28``,
``min_pixels = 16*28*28``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from timegrpo.bench.timing import median

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


def measure_video(path: str | Path, sampling: Any, cache_root: str | Path, *, repeats: int = 3) -> dict[str, Any]:
    """Cold decode vs cached read of one video under ``sampling`` (see the module docstring)."""
    import torch

    from timegrpo.data.video import FrameCache, sample_frames

    cache = FrameCache(cache_root)
    t0 = time.perf_counter()
    cold = sample_frames(path, sampling)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = sample_frames(path, sampling, cache=cache)
    fill_s = time.perf_counter() - t0
    if first.from_cache:
        raise RuntimeError(f"{path}: {cache_root} already holds these frames; measure with an empty cache folder")
    entry = cache.entry_path(cache.key(str(Path(path).resolve()), sampling, None, None))
    reads = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        hot = sample_frames(path, sampling, cache=cache)
        reads.append(time.perf_counter() - t0)
        if not hot.from_cache or not torch.equal(hot.frames, cold.frames):
            raise RuntimeError(f"{path}: the cached frames differ from the decoded ones")
    t, _, h, w = cold.frames.shape
    cached_s = median(reads)
    return {
        "video": Path(path).name, "frames": t, "height": h, "width": w,
        "visual_tokens": t // 2 * (h // 28) * (w // 28), "duration_s": round(cold.decoded_duration, 2),
        "cold_s": cold_s, "fill_s": fill_s, "cached_s": cached_s, "speedup": cold_s / cached_s,
        "cache_entry_kb": entry.stat().st_size / 1024,
    }


def measure_videos(paths: Sequence[str | Path], sampling: Any, cache_root: str | Path,
                   *, repeats: int = 3) -> list[dict[str, Any]]:
    return [measure_video(p, sampling, cache_root, repeats=repeats) for p in paths]


def real_videos(folder: str | Path) -> list[Path]:
    """The video files of ``folder`` (sorted); an error naming the folder when it holds none."""
    root = Path(folder)
    found = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if root.is_dir() else []
    if not found:
        raise FileNotFoundError(f"--real-videos {root}: no {'/'.join(VIDEO_SUFFIXES)} files there")
    return found


def time_r1_sampling() -> Any:
    """Time-R1's frame sampling (the :class:`~timegrpo.data.video.VideoSampling` defaults)."""
    from timegrpo.data.video import VideoSampling

    return VideoSampling()


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Medians over videos of the cold and cached seconds, and of the speed-up."""
    return {"videos": len(rows), "cold_s": median([r["cold_s"] for r in rows]),
            "cached_s": median([r["cached_s"] for r in rows]), "speedup": median([r["speedup"] for r in rows])}
