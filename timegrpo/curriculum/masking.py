"""VideoTG-R1's curriculum masking: black out frames OUTSIDE the ground truth, more early in training.

At step ``k`` of ``K`` a hard sample has a fraction ``m(k) = 0.8 * max(0, 1 - k / (0.5 K))`` of its frames outside
the ground truth replaced by black frames (:func:`mask_schedule`), farthest from the ground truth first or at
random (:func:`frames_to_mask`); the ground-truth frames, the number of frames, their timestamps and the duration
never change, so the model is still asked to ground in the full time axis, with fewer distractors to look at.

A frame is a *ground-truth frame* when its timestamp ``t`` (seconds from the clip start: the instant the frame
shows) lies in a closed window: ``s <= t <= e`` for some ground-truth ``(s, e)`` (:func:`inside_windows`). Every
other frame is *outside*. Departures and choices (the paper gives no code): the count is exactly
``int(fraction * n_outside)`` (rounded down); "farthest" ranks outside frames by their distance in seconds to
the nearest window, ties broken by the earlier frame; "random" draws without replacement with
``numpy.random.default_rng(seed)``. Qwen-VL merges frame pairs into one temporal patch, so a masked frame next to
a ground-truth frame shares a patch with it; the ground-truth frame itself is still shown unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ORDERS = ("farthest", "random")


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


def frames_to_mask(frame_times: Sequence[float], windows: Sequence[Sequence[float]], fraction: float,
                   order: str = "farthest", seed: int = 0) -> list[bool]:
    """Which frames to black out: exactly ``int(fraction * n_outside)`` of the frames outside ``windows``.

    ``frame_times`` are the frames' timestamps in seconds; ground-truth frames (:func:`inside_windows`) are never
    chosen. ``order``: ``farthest`` (largest distance to the nearest window first, earlier frame on ties) or
    ``random`` (seeded draw without replacement).

    >>> frames_to_mask([0, 1, 2, 3, 4, 5, 6, 7], [(3.0, 4.0)], 0.5)
    [True, True, False, False, False, False, False, True]
    """
    if not windows:
        raise ValueError("frames_to_mask needs at least one ground-truth window")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    outside = [i for i, t in enumerate(frame_times) if not inside_windows(float(t), windows)]
    n = int(fraction * len(outside))
    if order == "farthest":
        ranked = sorted(outside, key=lambda i: (-distance_to_windows(float(frame_times[i]), windows), i))
        chosen = ranked[:n]
    else:
        chosen = [outside[j] for j in np.random.default_rng(seed).choice(len(outside), size=n, replace=False)]
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


class CurriculumMasking:
    """VideoTG-R1's masking as a :data:`timegrpo.data.source.FrameTransform`: hard samples (``meta`` key
    ``difficulty_bucket`` == ``"hard"``, as ``timegrpo curriculum select`` writes it) get
    :func:`frames_to_mask` at :func:`mask_schedule` of the step blacked out; other samples pass unchanged.

    Per step it tallies what it did (thread-safe: frames may be prepared in background threads);
    :meth:`pop_stats` returns and forgets a step's ``masking/fraction`` (the schedule), ``masking/masked_share``
    (masked frames / all frames of the step's samples) and ``masking/hard_share`` (hard samples / samples).
    The ``random`` order draws with a seed of ``(seed, step, qid)``, so a resumed run masks the same frames.
    """

    def __init__(self, max_fraction: float = 0.8, until: float = 0.5, order: str = "farthest", seed: int = 0,
                 bucket_key: str = "difficulty_bucket") -> None:
        import threading

        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
        mask_schedule(0, 1, max_fraction, until)  # checks the arguments
        self.max_fraction, self.until, self.order, self.seed = max_fraction, until, order, seed
        self.bucket_key = bucket_key
        self._lock = threading.Lock()
        self._tally: dict[int, list[float]] = {}

    def __call__(self, sample: Any, frames: torch.Tensor, meta: Any, step: int, total_steps: int) -> torch.Tensor:
        from zlib import crc32

        from timegrpo.data.source import frame_times

        fraction = mask_schedule(step, total_steps, self.max_fraction, self.until)
        hard = sample.meta.get(self.bucket_key) == "hard"
        mask = [False] * frames.shape[0]
        if hard and fraction > 0:
            seed = (self.seed * 1_000_003 + step * 10_007 + crc32(sample.qid.encode())) % 2**32
            mask = frames_to_mask(frame_times(meta), sample.windows, fraction, order=self.order, seed=seed)
        with self._lock:
            t = self._tally.setdefault(step, [fraction, 0.0, 0.0, 0.0, 0.0])
            t[1] += sum(mask)
            t[2] += len(mask)
            t[3] += hard
            t[4] += 1
        return black_out(frames, mask) if any(mask) else frames

    def pop_stats(self, step: int) -> dict[str, float]:
        """The tallies of ``step`` (empty when no frames were loaded for it), then forgotten."""
        with self._lock:
            t = self._tally.pop(step, None)
        if t is None:
            return {}
        return {"masking/fraction": t[0], "masking/masked_share": t[1] / max(t[2], 1),
                "masking/hard_share": t[3] / max(t[4], 1)}
