"""Where a sample's frames come from: a :data:`VideoSource` maps a sample to its sampled frames and metadata;
:class:`Prefetcher` does such work (reading, sampling and processing the videos of the next micro-batches) in
background threads while the current micro-batch trains.

Shared by training, evaluation and the benchmark, so every path feeds the model the same frames.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import torch

from timegrpo.data.schema import Sample

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

#: ``sample -> (frames (T, C, H, W) float32 in [0, 255], transformers VideoMetadata)``: see :func:`video_source`.
VideoSource = Callable[[Sample], tuple[torch.Tensor, Any]]


def video_source(sampling: Any = None, *, cache_dir: str | None = None) -> VideoSource:
    """A :data:`VideoSource` that samples each sample's (cropped) video with ``sampling``
    (:class:`timegrpo.data.video.VideoSampling`: fps or nframes, pixel budgets, max_frames) through the
    on-disk frame cache in ``cache_dir`` when given (the second epoch then decodes nothing)."""
    from transformers.video_utils import VideoMetadata

    from timegrpo.data.video import FrameCache, sample_frames_for

    cache = FrameCache(cache_dir) if cache_dir else None

    def load(sample: Sample) -> tuple[torch.Tensor, Any]:
        vf = sample_frames_for(sample, sampling, cache=cache)
        # Frame positions relative to the clip start (qwen-vl-utils counts them from the file start, which
        # would give Qwen3-VL absolute times for cropped clips); sampled fps = T / clip_frames * fps is unchanged.
        meta = VideoMetadata(total_num_frames=vf.clip_frames, fps=vf.video_fps,
                             frames_indices=[t * vf.video_fps for t in vf.timestamps], duration=vf.decoded_duration)
        return vf.frames, meta

    return load


#: ``(sample, frames (T, C, H, W), metadata, step, total_steps) -> frames``: a per-sample change of the frames
#: that may depend on the training step (curriculum masking); it keeps T, the timestamps and the metadata.
FrameTransform = Callable[[Sample, torch.Tensor, Any, int, int], torch.Tensor]


def frame_times(meta: Any) -> list[float]:
    """Each frame's timestamp in seconds from the clip start, from the metadata :func:`video_source` builds
    (``frames_indices`` are ``t * fps``).

    >>> from types import SimpleNamespace
    >>> frame_times(SimpleNamespace(frames_indices=[0, 12.5, 25], fps=25.0))
    [0.0, 0.5, 1.0]
    """
    return [float(i) / float(meta.fps) for i in meta.frames_indices]


def at_step(videos: VideoSource, transform: FrameTransform, step: int, total_steps: int) -> VideoSource:
    """``videos`` with ``transform`` applied at optimiser step ``step`` of ``total_steps``.

    The step is bound here, not read from the trainer when the frames are loaded, so frames prepared ahead
    (a prefetching thread working on the next step) get the step they are for.
    """
    def load(sample: Sample) -> tuple[torch.Tensor, Any]:
        frames, meta = videos(sample)
        out = transform(sample, frames, meta, step, total_steps)
        if out.shape != frames.shape:
            raise ValueError(f"a frame transform changed the frames of qid {sample.qid} from {tuple(frames.shape)} "
                             f"to {tuple(out.shape)}; it must keep their number and size")
        return out, meta

    return load


class Prefetcher(Generic[K, T, R]):
    """``fn(item)`` computed ahead of use by ``num_workers`` background threads, each result handed out once.

    ``submit(key, item)`` queues the work; ``get(key, item)`` returns its result (waiting for it), or computes
    ``fn(item)`` in the calling thread when ``key`` was never submitted. Either way the result is ``fn(item)``:
    prefetching changes when the work is done, never what it returns, so 0 and N workers give the same
    results. An exception raised in a worker is raised by :meth:`get`.

    Each worker thread runs its own ``worker_fn()`` (built once per thread; default ``fn`` itself), which must
    compute what ``fn`` does: a worker can hold its own copy of something that is not thread-safe (a fast
    tokenizer). Threads, not processes: video decoding and the processor's tensor work release the GIL, and
    nothing has to be pickled (the frame cache and the :data:`VideoSource` are shared as they are). With
    ``num_workers == 0`` nothing runs in the background and :meth:`submit` does nothing.

    >>> pf = Prefetcher(lambda x: x * x, num_workers=2)
    >>> pf.submit("a", 3)
    >>> pf.pending(), pf.get("a", 3), pf.get("b", 4), pf.pending()
    (['a'], 9, 16, [])
    >>> pf.close()
    """

    def __init__(self, fn: Callable[[T], R], num_workers: int = 0, *,
                 worker_fn: Callable[[], Callable[[T], R]] | None = None) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.fn = fn
        self.num_workers = num_workers
        self._worker_fn = worker_fn or (lambda: fn)
        self._futures: dict[K, Future[R]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()

    def _run(self, item: T) -> R:
        """``fn(item)`` in a worker thread, with that thread's function."""
        fn = getattr(self._local, "fn", None)
        if fn is None:
            fn = self._local.fn = self._worker_fn()
        return fn(item)

    def submit(self, key: K, item: T) -> None:
        """Start ``fn(item)`` in the background under ``key`` (nothing when already pending or without workers)."""
        if self.num_workers == 0 or key in self._futures:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="timegrpo-prefetch")
        self._futures[key] = self._pool.submit(self._run, item)

    def get(self, key: K, item: T) -> R:
        """The result of ``fn(item)``: the one submitted under ``key``, or computed now."""
        future = self._futures.pop(key, None)
        return self.fn(item) if future is None else future.result()

    def pending(self) -> list[K]:
        """Keys submitted and not yet taken, in submission order."""
        return list(self._futures)

    def drop(self, key: K) -> None:
        """Forget the work under ``key`` (cancelled when it has not started)."""
        future = self._futures.pop(key, None)
        if future is not None:
            future.cancel()

    def close(self) -> None:
        """Cancel what has not started and stop the threads (without waiting for running work)."""
        for key in self.pending():
            self.drop(key)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
