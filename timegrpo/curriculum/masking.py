"""VideoTG-R1's curriculum masking (SPEC section 2) under the names the curriculum API promises:
``mask_schedule(step, total_steps, max_fraction=0.8, until=0.5)``, ``frames_to_mask(frame_times, windows,
fraction, order="farthest", seed=0)``, :class:`CurriculumMasking` and their helpers.

The maths lives in :mod:`timegrpo.data.masking`, a stage the trainer may import (the trainer applies it through
the generic :data:`timegrpo.data.source.FrameTransform` hook when a recipe's ``masking`` section is on); this
module re-exports it for curriculum code and users.
"""

from __future__ import annotations

from timegrpo.data.masking import (
    MASK_ORDERS,
    CurriculumMasking,
    black_out,
    distance_to_windows,
    frames_to_mask,
    inside_windows,
    mask_schedule,
    masking_seed,
)

#: The registered masking orders (``farthest``, ``random``).
ORDERS = tuple(MASK_ORDERS.names())

__all__ = ["MASK_ORDERS", "ORDERS", "CurriculumMasking", "black_out", "distance_to_windows", "frames_to_mask",
           "inside_windows", "mask_schedule", "masking_seed"]
