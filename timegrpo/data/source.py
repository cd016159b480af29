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
