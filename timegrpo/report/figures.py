"""The report's own figures (PNG, matplotlib's Agg backend): example timelines and training curves. The
per-benchmark plots (IoU histogram, R1 by ground-truth length, centres) are :mod:`timegrpo.evaluate.plots`'.

* Timelines: for a few queries of an evaluation, the video's length as a bar, the ground-truth windows and the
  top-1 predicted window on it, with the query and its IoU. The examples are spread over the IoU ranking
  (:func:`pick_examples`: best, worst and evenly between), so a page shows hits and misses alike.
* Training curves: one panel per logged quantity among :data:`CURVES` (reward, IoU, KL, the share of groups
  whose rewards all tie, held-out mIoU of periodic evaluation, the SFT loss), against the optimiser step.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from timegrpo.evaluate.plots import top_window
from timegrpo.spans import temporal_iou

#: ``(metrics.jsonl key, panel title)`` of the training curves, in panel order; absent keys get no panel.
CURVES: tuple[tuple[str, str], ...] = (
    ("reward", "mean reward"),
    ("iou", "IoU of the rollouts"),
    ("kl", "KL to the reference"),
    ("frac_reward_zero_std", "share of zero-std groups"),
    ("eval/mIoU", "held-out mIoU (periodic eval)"),
    ("loss", "loss"),
)


@dataclass
class Example:
    """One query drawn on a timeline."""

    qid: str
    query: str
    duration: float
    gts: list[tuple[float, float]]
    pred: tuple[float, float] | None
    iou: float


def pick_examples(ious: Sequence[float], k: int) -> list[int]:
    """Indices of ``k`` queries spread over the IoU ranking (best first, ties by position): ranks
    ``round(linspace(0, n - 1, k))``, without repeats.

    >>> pick_examples([0.1, 0.9, 0.5, 0.0, 0.7], 3)
    [1, 2, 3]
    >>> pick_examples([0.2, 0.4], 5)
    [1, 0]
    """
    order = sorted(range(len(ious)), key=lambda i: (-ious[i], i))
    if not order or k <= 0:
        return []
    ranks = np.round(np.linspace(0, len(order) - 1, min(k, len(order)))).astype(int)
    return list(dict.fromkeys(order[r] for r in ranks))


def examples(records: Sequence[dict[str, Any]], samples: Sequence[Any], k: int) -> list[Example]:
    """``k`` :class:`Example` s from prediction records and their samples (aligned), spread over the IoU."""
    rows = []
    for rec, s in zip(records, samples, strict=True):
        if not s.windows:
            continue
        pred = top_window(rec)
        duration = float(s.duration or max([e for _, e in s.windows] + ([pred[1]] if pred else [])))
        rows.append(Example(str(s.qid), s.query, duration, [(float(a), float(b)) for a, b in s.windows], pred,
                            temporal_iou(pred, s.windows) if pred is not None else 0.0))
    return [rows[i] for i in pick_examples([r.iou for r in rows], k)]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_timelines(rows: Sequence[Example], path: Path) -> Path:
    """One timeline per example (true windows green, the prediction orange), saved to ``path``."""
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 1.25 * len(rows) + 0.4), dpi=100, squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        ax.broken_barh([(0, r.duration)], (0, 3), color="#eeeeee")
        ax.broken_barh([(a, b - a) for a, b in r.gts], (1.6, 1.2), color="#228833", label="true")
        if r.pred is not None:
            ax.broken_barh([(r.pred[0], r.pred[1] - r.pred[0])], (0.2, 1.2), color="#ee7733", label="predicted")
        pred = f"{r.pred[0]:.1f}-{r.pred[1]:.1f} s" if r.pred is not None else "no answer parsed"
        ax.set_title(textwrap.shorten(f"{r.qid}: {r.query}", 90) + f"  |  pred {pred}, IoU {r.iou:.2f}",
                     fontsize=9, loc="left")
        ax.set(xlim=(0, r.duration), ylim=(0, 3), yticks=[])
        ax.tick_params(labelsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=8, ncols=2)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def curve_panels(logs: Sequence[dict[str, Any]]) -> list[tuple[str, str, list[int], list[float]]]:
    """``(key, title, steps, values)`` of each :data:`CURVES` key logged with a finite value at least once.

    >>> logs = [{"step": 1, "reward": 0.5, "kl": 0.0}, {"step": 2, "reward": 0.75}]
    >>> [(k, s, v) for k, _, s, v in curve_panels(logs)]
    [('reward', [1, 2], [0.5, 0.75]), ('kl', [1], [0.0])]
    """
    out = []
    for key, title in CURVES:
        pts = [(int(log.get("step", i + 1)), float(log[key])) for i, log in enumerate(logs)
               if isinstance(log.get(key), (int, float)) and np.isfinite(log[key])]
        if pts:
            steps, values = zip(*pts)
            out.append((key, title, list(steps), list(values)))
    return out


def plot_training_curves(logs: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """The :func:`curve_panels` of a run side by side (3 a row), saved to ``path``; None without any."""
    panels = curve_panels(logs)
    if not panels:
        return None
    plt = _plt()
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows + 0.5), dpi=100, squeeze=False)
    for ax, (_key, name, steps, values) in zip(axes.flat, panels):
        ax.plot(steps, values, color="#4477aa", linewidth=1.2, marker="o" if len(steps) < 30 else None,
                markersize=3)
        ax.set(title=name, xlabel="step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
