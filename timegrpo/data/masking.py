"""VideoTG-R1's curriculum masking: black out frames OUTSIDE the ground truth, more early in training.

At step ``k`` of ``K`` a sample of a masked difficulty bucket (VideoTG-R1: ``hard`` only) has a fraction
``m(k) = 0.8 * max(0, 1 - k / (0.5 K))`` of its frames outside the ground truth replaced by black frames
(:func:`mask_schedule`), farthest from the ground truth first or at random (:func:`frames_to_mask`); the
ground-truth frames, the number of frames, their timestamps and the duration never change, so the model is still
asked to ground in the full time axis, with fewer distractors to look at.

A frame is a *ground-truth frame* when its timestamp ``t`` (seconds from the clip start: the instant the frame
shows) lies in a closed window: ``s <= t <= e`` for some ground-truth ``(s, e)`` (:func:`inside_windows`). Every
other frame is *outside*. Departures and choices (the paper gives no code): the count is exactly
``int(fraction * n_outside)`` (rounded down); the orders are registered in :data:`MASK_ORDERS`: ``farthest`` ranks
outside frames by their distance in seconds to the nearest window, ties broken by the earlier frame; ``random``
draws without replacement with ``numpy.random.default_rng(seed)``. Qwen-VL merges frame pairs into one temporal
patch, so a masked frame next to a ground-truth frame shares a patch with it; the ground-truth frame itself is
still shown unchanged.

This is pure data-stage code (frames in, frames out), so the trainer can apply it through the generic
:data:`timegrpo.data.source.FrameTransform` hook; :mod:`timegrpo.curriculum.masking` re-exports it under the
names the curriculum API promises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any
from zlib import crc32

import numpy as np
import torch

from timegrpo.data.source import frame_times
from timegrpo.registry import Registry

#: ``(outside frame indices, frame_times, windows, n, seed) -> the n indices to black out``.
MaskOrder = Callable[[list[int], Sequence[float], Sequence[Sequence[float]], int, int], list[int]]
MASK_ORDERS: Registry[MaskOrder] = Registry("masking order")


def mask_schedule(step: int, total_steps: int, max_fraction: float = 0.8, until: float = 0.5) -> float:
    """The masked fraction at ``step`` of ``total_steps``: ``max_fraction * max(0, 1 - step / (until * K))``.

    Linear from ``max_fraction`` at step 0 down to 0 at ``until * total_steps``, then 0.

    >>> [round(mask_schedule(k, 100), 4) for k in (0, 10, 25, 49, 50, 80)]
    [0.8, 0.64, 0.4, 0.016, 0.0, 0.0]
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 < until <= 1 or not 0 <= max_fraction <= 1:
        raise ValueError(f"need 0 < until <= 1 and 0 <= max_fraction <= 1, got {until}, {max_fraction}")
    return max_fraction * max(0.0, 1.0 - step / (until * total_steps))


def inside_windows(t: float, windows: Sequence[Sequence[float]]) -> bool:
    """Whether a frame at ``t`` seconds is a ground-truth frame: ``s <= t <= e`` for some window.

    >>> inside_windows(5.0, [(5.0, 7.5)]), inside_windows(7.5, [(5.0, 7.5)]), inside_windows(7.51, [(5.0, 7.5)])
    (True, True, False)
    """
    return any(s <= t <= e for s, e in windows)


def distance_to_windows(t: float, windows: Sequence[Sequence[float]]) -> float:
    """Seconds from ``t`` to the nearest window (0 inside one).

    >>> distance_to_windows(1.0, [(4.0, 6.0), (10.0, 12.0)]), distance_to_windows(8.5, [(4.0, 6.0), (10.0, 12.0)])
    (3.0, 1.5)
    """
    return min(max(s - t, t - e, 0.0) for s, e in windows)


@MASK_ORDERS.register("farthest")
def farthest_first(outside: list[int], frame_times: Sequence[float], windows: Sequence[Sequence[float]], n: int,
                   seed: int) -> list[int]:
    """The ``n`` outside frames farthest (in seconds) from the nearest window; the earlier frame on ties
    (``seed`` unused).

    >>> farthest_first([0, 1, 4, 5], [0, 1, 2, 3, 4, 5], [(2.0, 3.0)], 3, 0)
    [0, 5, 1]
    """
    return sorted(outside, key=lambda i: (-distance_to_windows(float(frame_times[i]), windows), i))[:n]


@MASK_ORDERS.register("random")
def random_order(outside: list[int], frame_times: Sequence[float], windows: Sequence[Sequence[float]], n: int,
                 seed: int) -> list[int]:
    """``n`` outside frames drawn uniformly without replacement, ``numpy.random.default_rng(seed)``."""
    return [outside[j] for j in np.random.default_rng(seed).choice(len(outside), size=n, replace=False)]


def frames_to_mask(frame_times: Sequence[float], windows: Sequence[Sequence[float]], fraction: float,
                   order: str = "farthest", seed: int = 0) -> list[bool]:
    """Which frames to black out: exactly ``int(fraction * n_outside)`` of the frames outside ``windows``.

    ``frame_times`` are the frames' timestamps in seconds; ground-truth frames (:func:`inside_windows`) are never
    chosen. ``order`` names a :data:`MASK_ORDERS` entry: ``farthest`` (largest distance to the nearest window
    first, earlier frame on ties) or ``random`` (seeded draw without replacement).

    >>> frames_to_mask([0, 1, 2, 3, 4, 5, 6, 7], [(3.0, 4.0)], 0.5)
    [True, True, False, False, False, False, False, True]
    """
    if not windows:
        raise ValueError("frames_to_mask needs at least one ground-truth window")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if order not in MASK_ORDERS:
        raise ValueError(f"order must be one of {', '.join(MASK_ORDERS.names())}, got {order!r}")
    outside = [i for i, t in enumerate(frame_times) if not inside_windows(float(t), windows)]
    n = int(fraction * len(outside))
    chosen = MASK_ORDERS.get(order)(outside, frame_times, windows, n, seed) if n else []
    mask = [False] * len(frame_times)
    for i in chosen:
        mask[i] = True
    return mask


def black_out(frames: torch.Tensor, mask: Sequence[bool]) -> torch.Tensor:
    """``frames`` ``(T, C, H, W)`` with the frames where ``mask`` is true set to 0 (black); a new tensor.

    >>> black_out(torch.ones(3, 1, 1, 1), [False, True, False]).flatten().tolist()
    [1.0, 0.0, 1.0]
    """
    if len(mask) != frames.shape[0]:
        raise ValueError(f"mask has {len(mask)} entries for {frames.shape[0]} frames")
    keep = torch.tensor([not m for m in mask], dtype=frames.dtype, device=frames.device)
    return frames * keep.view(-1, *([1] * (frames.ndim - 1)))


def masking_seed(seed: int, step: int, qid: str) -> int:
    """The ``random`` order's seed of one sample at one step: a function of ``(seed, step, qid)`` only, so a
    resumed run, a prefetching thread and a re-assembled micro-batch all mask the same frames.

    >>> masking_seed(0, 3, "a") == masking_seed(0, 3, "a") != masking_seed(0, 4, "a")
    True
    """
    return (seed * 1_000_003 + step * 10_007 + crc32(qid.encode())) % 2**32


class CurriculumMasking:
    """VideoTG-R1's masking as a :data:`timegrpo.data.source.FrameTransform`: samples whose ``meta[bucket_key]``
    (``difficulty_bucket``, as ``timegrpo curriculum select`` writes it) is one of ``buckets`` get
    :func:`frames_to_mask` at :func:`mask_schedule` of the step blacked out; other samples pass unchanged.

    Per step it tallies what it did (thread-safe: frames may be prepared in background threads), once per
    ``(step, qid)``: a sample whose frames are loaded twice in a step (dynamic sampling draws, then re-assembles
    the micro-batches it keeps) counts once, with the same mask both times. :meth:`pop_stats` returns and
    forgets a step's ``masking/fraction`` (the schedule), ``masking/masked_share`` (masked frames / all frames
    of the step's samples) and ``masking/bucket_share`` (samples in a masked bucket / samples).
    """

    def __init__(self, max_fraction: float = 0.8, until: float = 0.5, order: str = "farthest", seed: int = 0,
                 buckets: Sequence[str] = ("hard",), bucket_key: str = "difficulty_bucket") -> None:
        if order not in MASK_ORDERS:
            raise ValueError(f"order must be one of {', '.join(MASK_ORDERS.names())}, got {order!r}")
        mask_schedule(0, 1, max_fraction, until)  # checks the arguments
        self.max_fraction, self.until, self.order, self.seed = max_fraction, until, order, seed
        self.buckets, self.bucket_key = frozenset(buckets), bucket_key
        self._lock = threading.Lock()
        self._tally: dict[int, dict[str, tuple[int, int, bool]]] = {}
        self._total_steps = 1

    def mask(self, sample: Any, frame_times: Sequence[float], step: int, total_steps: int) -> list[bool]:
        """The frames of ``sample`` blacked out at ``step`` of ``total_steps`` (all false outside the buckets)."""
        fraction = mask_schedule(step, total_steps, self.max_fraction, self.until)
        if fraction <= 0 or sample.meta.get(self.bucket_key) not in self.buckets:
            return [False] * len(frame_times)
        return frames_to_mask(frame_times, sample.windows, fraction, order=self.order,
                              seed=masking_seed(self.seed, step, sample.qid))

    def __call__(self, sample: Any, frames: torch.Tensor, meta: Any, step: int, total_steps: int) -> torch.Tensor:
        mask = self.mask(sample, frame_times(meta), step, total_steps)
        if len(mask) != frames.shape[0]:
            raise ValueError(f"qid {sample.qid}: {frames.shape[0]} frames but {len(mask)} timestamps")
        with self._lock:
            self._total_steps = total_steps
            selected = sample.meta.get(self.bucket_key) in self.buckets
            self._tally.setdefault(step, {})[sample.qid] = (sum(mask), len(mask), selected)
        return black_out(frames, mask) if any(mask) else frames

    def pop_stats(self, step: int, reduce_sum: Callable[[dict[str, float]], dict[str, float]] | None = None
                  ) -> dict[str, float]:
        """The tallies of ``step`` (zeros when no frames were loaded for it), then forgotten. ``reduce_sum``
        sums the counts over processes first (the trainer passes its all-reduce), so the shares are global."""
        with self._lock:
            rows = list(self._tally.pop(step, {}).values())
            total = self._total_steps
        counts = {"masked_frames": float(sum(r[0] for r in rows)), "frames": float(sum(r[1] for r in rows)),
                  "selected": float(sum(r[2] for r in rows)), "samples": float(len(rows))}
        if reduce_sum is not None:
            counts = reduce_sum(counts)
        return {"masking/fraction": mask_schedule(step, total, self.max_fraction, self.until),
                "masking/masked_share": counts["masked_frames"] / max(counts["frames"], 1.0),
                "masking/bucket_share": counts["selected"] / max(counts["samples"], 1.0)}
