"""Where a sample's frames come from: a :data:`VideoSource` maps a sample to its sampled frames and metadata.

Shared by training, evaluation and the benchmark, so every path feeds the model the same frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from timegrpo.data.schema import Sample

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
