"""Run the vision tower once per prompt per step, and reuse its output everywhere.

A GRPO step feeds each prompt's video to generation (G completions) and to up to three log-prob forwards
(old, reference, train). Passing ``pixel_values_videos`` each time would run the vision transformer
``1 + 3G`` times per prompt. With a frozen tower its output cannot change within a step, so
:func:`encode_videos` runs it once (no grad) and :func:`encoder_outputs` hands the result to transformers
as ``mm_encoder_outputs`` (supported by ``generate`` and ``forward`` of the Qwen-VL models in
transformers >= 5), repeated for the rows that share a video.

When the patch merger trains (Time-R1's default), the train forward needs gradients through it: the cached
pre-merger hidden states are pushed through the merger again with grad ("merger replay", registered per
family in :data:`MERGER_REPLAY`). A family without a replay (Qwen3-VL, whose deepstack mergers read
intermediate layers) re-runs the tower for the train forward; :class:`VisionCallCounter` shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from timegrpo.models.loading import unwrap, vision_tower
from timegrpo.registry import Registry


@dataclass
class VideoFeatures:
    """One step's vision-tower output for a batch of videos.

    Attributes:
        output: the transformers output of ``get_video_features`` (``pooler_output``: one ``(n_i, D)`` tensor
            per video; Qwen3-VL adds ``deepstack_features``), detached.
        grid_thw: ``(V, 3)`` grid of each video.
        pre_merger: ``(sum_i patches_i, D_v)`` hidden states before the merger (window order for Qwen2.5-VL),
            kept only when a merger replay with grad will be needed.
    """

    output: Any
    grid_thw: torch.Tensor
    pre_merger: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.output.pooler_output)


class VisionCallCounter:
    """Counts a model's vision-tower forwards (a forward hook; ``remove()`` detaches it).

    ``calls`` counts forward calls (one call encodes a whole batch of videos); ``videos`` counts the videos
    (or images) encoded, i.e. the rows of the ``grid_thw`` each call received.
    """

    def __init__(self, model: nn.Module) -> None:
        self.calls = 0
        self.videos = 0
        self._handle = vision_tower(model).register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        self.calls += 1
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        self.videos += int(grid.shape[0]) if grid is not None else 1

    def remove(self) -> None:
        self._handle.remove()


def _split(merged: torch.Tensor, grid_thw: torch.Tensor, merge: int) -> tuple[torch.Tensor, ...]:
    sizes = (grid_thw.prod(-1) // merge**2).tolist()
    return tuple(torch.split(merged, sizes))


#: ``(visual, pre_merger, grid_thw) -> merged (sum n_i, D)`` recomputing the merger with grad, per model_type.
MERGER_REPLAY: Registry[Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("merger replay")


@MERGER_REPLAY.register("qwen2_vl")
def _replay_qwen2_vl(visual: nn.Module, pre: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
    return visual.merger(pre)


@MERGER_REPLAY.register("qwen2_5_vl")
def _replay_qwen2_5_vl(visual: nn.Module, pre: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
    from transformers.vision_utils import get_vision_window_index

    window_index, _ = get_vision_window_index(
        grid_thw, spatial_merge_size=visual.spatial_merge_size, window_size=visual.window_size,
        patch_size=visual.patch_size, kwargs={},
    )
    return visual.merger(pre)[torch.argsort(window_index), :]


def needs_replay(model: nn.Module) -> bool:
    """True when some merger parameter trains (so the train forward needs merger gradients)."""
    from timegrpo.models.loading import merger_modules

    return any(p.requires_grad for m in merger_modules(model) for p in m.parameters())


@torch.no_grad()
def encode_videos(model: nn.Module, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor) -> VideoFeatures:
    """Run the vision tower once (no grad) on all videos of a batch; see the module docstring."""
    base = unwrap(model)
    out = base.get_video_features(pixel_values_videos, video_grid_thw, return_dict=True)
    keep = needs_replay(model) and base.config.model_type in MERGER_REPLAY
    pre = out.last_hidden_state.detach() if keep else None
    return VideoFeatures(output=out, grid_thw=video_grid_thw, pre_merger=pre)


def _select(output: Any, index: Sequence[int], pooler: Sequence[torch.Tensor]) -> Any:
    """A copy of ``output`` holding videos ``index`` (in that order), with ``pooler`` as pooler_output."""
    cls = type(output)
    kwargs: dict[str, Any] = {"pooler_output": [pooler[i] for i in index]}
    deep = getattr(output, "deepstack_features", None)
    if deep is not None:
        kwargs["deepstack_features"] = [[layer[i] for i in index] for layer in deep]
    return cls(**kwargs)


def select_videos(outputs: dict[str, Any], index: Sequence[int]) -> dict[str, Any]:
    """``mm_encoder_outputs`` (from :func:`encoder_outputs`) of videos ``index``, in that order: rows that
    share a video share its tensors (and, with gradients, its graph)."""
    video = outputs["video"]
    return {"video": _select(video, index, video.pooler_output)}


def encoder_outputs(model: nn.Module, feats: VideoFeatures, index: Sequence[int], *,
                    with_grad: bool = False, pixel_values_videos: torch.Tensor | None = None) -> dict[str, Any]:
    """``mm_encoder_outputs`` for rows that use videos ``index`` (e.g. ``[0]*G + [1]*G``).

    ``with_grad`` rebuilds merged embeddings with gradients through the merger (replay), or, for a family
    without a replay, re-runs the vision tower on ``pixel_values_videos`` with grad enabled.
    """
    base = unwrap(model)
    if with_grad and needs_replay(model):
        if feats.pre_merger is not None:
            visual = vision_tower(model)
            merged = MERGER_REPLAY.get(base.config.model_type)(visual, feats.pre_merger, feats.grid_thw)
            pooler = _split(merged, feats.grid_thw, visual.spatial_merge_size)
            return {"video": _select(feats.output, index, pooler)}
        if pixel_values_videos is None:
            raise ValueError(f"{base.config.model_type} has no merger replay: pass pixel_values_videos so the "
                             "train forward can re-run the vision tower with gradients")
        out = base.get_video_features(pixel_values_videos, feats.grid_thw, return_dict=True)
        return {"video": _select(out, index, out.pooler_output)}
    return {"video": _select(feats.output, index, feats.output.pooler_output)}
