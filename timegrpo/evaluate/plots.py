"""Evaluation plots (PNG, matplotlib's Agg backend): IoU histogram, R1 by ground-truth length, centres.

The numbers behind each plot are pure functions (:func:`plot_rows`, :func:`length_edges`,
:func:`recall_by_length`), tested on their own; :func:`write_plots` draws them.

* For every query the ground-truth window that counts is the one its prediction overlaps most (the one
  :func:`timegrpo.spans.temporal_iou` takes the max over; the first window when there is no prediction).
* Length bins are quantiles of the ground-truth lengths (at most ``n_bins``, so each holds about as many
  queries), with the query count written on each group of bars.
* Centres are divided by the duration, so videos of any length share the ``[0, 1]`` axes; unparsed
  predictions have no centre and are counted in the title.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from timegrpo.spans import span_iou

THRESHOLDS = (0.3, 0.5, 0.7)


@dataclass
class PlotRow:
    """One query: its IoU (0 when unparsed), matched ground-truth window, duration and prediction (or None)."""

    iou: float
    gt: tuple[float, float]
    duration: float
    pred: tuple[float, float] | None


def top_window(record: dict[str, Any]) -> tuple[float, float] | None:
    """The first (top-ranked) predicted window of a prediction record, or None.

    >>> top_window({"pred_relevant_windows": [[2.0, 5.0, 0.9], [7.0, 8.0, 0.1]]}), top_window({})
    ((2.0, 5.0), None)
    """
    wins = record.get("pred_relevant_windows") or []
    return (float(wins[0][0]), float(wins[0][1])) if wins else None


def plot_rows(records: Sequence[dict[str, Any]], samples: Sequence[Any]) -> list[PlotRow]:
    """Rows for the queries with a ground truth (``records`` and ``samples`` aligned by index).

    >>> from timegrpo.data.schema import Sample
    >>> s = Sample("1", "v", None, 40.0, "q", [(0.0, 4.0), (20.0, 30.0)])
    >>> plot_rows([{"pred_relevant_windows": [[22.0, 30.0, 1.0]]}], [s])[0]
    PlotRow(iou=0.8, gt=(20.0, 30.0), duration=40.0, pred=(22.0, 30.0))
    """
    rows = []
    for rec, s in zip(records, samples, strict=True):
        if not s.windows:
            continue
        pred = top_window(rec)
        gts = [(float(a), float(b)) for a, b in s.windows]
        best = max(gts, key=lambda g: span_iou(pred, g)) if pred is not None else gts[0]
        rows.append(PlotRow(span_iou(pred, best) if pred is not None else 0.0, best, float(s.duration), pred))
    return rows


def length_edges(lengths: Sequence[float], n_bins: int = 4) -> list[float]:
    """Bin edges (seconds, rounded to 0.1) at the quantiles of ``lengths``; duplicates merged.

    >>> length_edges([1, 2, 3, 4, 5, 6, 7, 8], n_bins=2)
    [1.0, 4.5, 8.0]
    >>> length_edges([5.0, 5.0, 5.0])
    [5.0, 5.0]
    """
    if not len(lengths):
        return []
    qs = np.quantile(np.asarray(lengths, dtype=float), np.linspace(0, 1, n_bins + 1))
    edges = sorted({round(float(q), 1) for q in qs})
    return edges if len(edges) > 1 else [edges[0], edges[0]]


def recall_by_length(lengths: Sequence[float], ious: Sequence[float], edges: Sequence[float],
                     thresholds: Sequence[float] = THRESHOLDS) -> list[dict[str, Any]]:
    """Per bin ``[lo, hi)`` (the last one closed): its label, query count and R1@m in percent.

    >>> r = recall_by_length([2, 3, 8, 9], [0.9, 0.1, 0.6, 0.4], [2.0, 5.0, 9.0])
    >>> [(b["label"], b["n"], b["R1@0.3"], b["R1@0.5"]) for b in r]
    [('2-5 s', 2, 50.0, 50.0), ('5-9 s', 2, 100.0, 50.0)]
    """
    ln, iou = np.asarray(lengths, dtype=float), np.asarray(ious, dtype=float)
    out = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        mask = (ln >= lo - 0.05) & ((ln <= hi + 0.05) if last else (ln < hi - 0.05))
        n = int(mask.sum())
        row: dict[str, Any] = {"label": f"{lo:g}-{hi:g} s", "n": n}
        for m in thresholds:
            row[f"R1@{m:g}"] = float(100.0 * np.mean(iou[mask] >= m)) if n else 0.0
        out.append(row)
    return out


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.5), dpi=100)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def plot_iou_histogram(rows: Sequence[PlotRow], path: Path) -> Path:
    fig, ax = _figure()
    ious = [r.iou for r in rows]
    ax.hist(ious, bins=np.linspace(0, 1, 21), color="#4477aa", edgecolor="white")
    for m in THRESHOLDS:
        ax.axvline(m, color="#cc6677", linestyle="--", linewidth=1)
    miou = 100 * float(np.mean(ious)) if ious else 0.0
    ax.set(xlabel="IoU of the top-1 prediction", ylabel="queries", xlim=(0, 1),
           title=f"IoU histogram (n={len(ious)}, mIoU {miou:.1f})")
    return _save(fig, path)


def plot_recall_by_length(rows: Sequence[PlotRow], path: Path, n_bins: int = 4) -> Path:
    fig, ax = _figure()
    lengths = [r.gt[1] - r.gt[0] for r in rows]
    bins = recall_by_length(lengths, [r.iou for r in rows], length_edges(lengths, n_bins))
    x = np.arange(len(bins))
    width = 0.8 / len(THRESHOLDS)
    for j, m in enumerate(THRESHOLDS):
        ax.bar(x + (j - 1) * width, [b[f"R1@{m:g}"] for b in bins], width, label=f"R1@{m:g}")
    ax.set_xticks(x, [f"{b['label']}\n(n={b['n']})" for b in bins])
    ax.set(xlabel="ground-truth length", ylabel="R1 (%)", ylim=(0, 100), title="R1 by ground-truth length")
    ax.legend()
    return _save(fig, path)


def plot_centres(rows: Sequence[PlotRow], path: Path) -> Path:
    fig, ax = _figure()
    pts = [((r.gt[0] + r.gt[1]) / 2 / r.duration, (r.pred[0] + r.pred[1]) / 2 / r.duration)
           for r in rows if r.pred is not None and r.duration > 0]
    if pts:
        t, p = zip(*pts)
        ax.scatter(t, p, s=12, alpha=0.6, color="#228833")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1)
    ax.set(xlabel="true centre / duration", ylabel="predicted centre / duration", xlim=(0, 1), ylim=(0, 1),
           title=f"centres ({len(pts)} predicted, {len(rows) - len(pts)} unparsed)")
    ax.set_aspect("equal")
    return _save(fig, path)


def write_plots(records: Sequence[dict[str, Any]], samples: Sequence[Any], out_dir: str | Path) -> list[Path]:
    """Write ``iou_hist.png``, ``r1_by_length.png`` and ``centres.png`` into ``out_dir``; returns their paths
    (none when no query has a ground truth)."""
    rows = plot_rows(records, samples)
    if not rows:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [plot_iou_histogram(rows, out / "iou_hist.png"), plot_recall_by_length(rows, out / "r1_by_length.png"),
            plot_centres(rows, out / "centres.png")]
