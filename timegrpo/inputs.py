"""From samples to model inputs: prompts with their videos, reward columns, SFT targets.

Shared by the GRPO trainer, the SFT warm start, evaluation and the benchmark, so that every path feeds the
model the same text and the same frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from timegrpo.data.schema import Sample
from timegrpo.prompts import get_template, sample_messages
from timegrpo.rollout import prepare_prompts

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


def prompt_inputs(processor: Any, samples: Sequence[Sample], videos: VideoSource, template: str,
                  *, video_first: bool = False) -> dict[str, Any]:
    """Processor outputs (P rows) for ``samples`` under ``template``; see :func:`timegrpo.rollout.prepare_prompts`."""
    frames, metas = zip(*(videos(s) for s in samples), strict=True)
    messages = [sample_messages(s, template, video_first=video_first) for s in samples]
    return prepare_prompts(processor, messages, frames, metas)


def reward_columns(samples: Sequence[Sample], num_generations: int) -> dict[str, list[Any]]:
    """Per-completion reward columns (TRL protocol): each sample's fields repeated ``num_generations`` times.

    ``windows`` and ``duration`` always; ``qid`` and ``query``; and every key of ``meta`` present in any sample
    (``answer``, ``options``, ...), None where a sample lacks it.

    >>> s = Sample("7", "v", None, 30.0, "jump", [(1.0, 2.0)], meta={"answer": "B"})
    >>> cols = reward_columns([s], 2)
    >>> cols["windows"], cols["duration"], cols["answer"]
    ([[[1.0, 2.0]], [[1.0, 2.0]]], [30.0, 30.0], ['B', 'B'])
    """
    cols: dict[str, list[Any]] = {"windows": [], "duration": [], "qid": [], "query": []}
    meta_keys = sorted({k for s in samples for k in s.meta})
    for k in meta_keys:
        cols.setdefault(k, [])
    for s in samples:
        for _ in range(num_generations):
            cols["windows"].append([[float(a), float(b)] for a, b in s.windows])
            cols["duration"].append(s.duration)
            cols["qid"].append(s.qid)
            cols["query"].append(s.query)
            for k in meta_keys:
                cols[k].append(s.meta.get(k))
    return cols


#: The SFT target of a think template: a short rationale and the answer (two decimals, Time-R1's format).
THINK_TARGET = "<think>The event happens from {start:.2f} to {end:.2f} seconds.</think><answer>{start:.2f} to {end:.2f}</answer>"
NO_THINK_TARGET = "<answer>{start:.2f} to {end:.2f}</answer>"


def sft_target(sample: Sample, template: str, target: str | None = None) -> str:
    """The assistant text SFT teaches for ``sample``: the first ground-truth window in the template's format.

    >>> s = Sample("1", "v", None, 20.0, "q", [(1.0, 4.5)])
    >>> sft_target(s, "no_think")
    '<answer>1.00 to 4.50</answer>'
    """
    if not sample.windows:
        raise ValueError(f"sample {sample.qid!r} has no ground-truth window: SFT needs one")
    fmt = target or (THINK_TARGET if get_template(template).think else NO_THINK_TARGET)
    start, end = sample.windows[0]
    return fmt.format(start=start, end=end, query=sample.query)
