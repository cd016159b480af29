"""A synthetic clip-feature benchmark with planted, query-dependent events, in the real lighthouse layout.

Each video holds ``events_per_video`` non-overlapping events of *different* concepts (out of ``n_concepts``),
and with probability ``repeat_prob`` its first concept occurs a second time. Every distinct concept of a video
gets one query whose ground truth is all of that concept's windows (so some queries have two windows, as about
a third of QVHighlights queries do). Concept ``k`` has a fixed random unit direction per video feature type and
one in text space. A clip's feature of type ``f`` is::

    noise * N(0, I) + scene_v + sum over events: amplitude * overlap(clip, event) * direction_f[k]

(``overlap`` = fraction of the clip inside the event, so boundaries fall inside clips and are recoverable only
from graded evidence; ``scene_v`` is a per-video constant). A query's tokens are filler words (random vectors
from a small shared vocabulary) plus one concept token ``text_direction[k] + noise``. Since every video holds
several concepts, the window can only be found by reading the text: a text-blind model that localised events
perfectly would still score about ``1 / events_per_video`` R1.

Annotation noise (``label_jitter``, in the splits of ``label_noise_splits``, train and val by default): every
boundary of a query's windows (and so its saliency labels) is moved by ``U(-label_jitter, label_jitter)`` seconds,
while the features keep the true events; the test split stays clean, so it measures the true boundaries.

Written files (what :func:`timegrpo.detr.features.load_split` reads with ``data.root = out``)::

    annotations/{train,val,test}.jsonl     moment_detr schema + relevant_clip_ids + saliency_scores (3 raters 0..4)
    features/{type}/{vid}.npz["features"]  (L, dim) raw (not normalised) float32, L = duration / clip_len
    features/text/qid{qid}.npz["last_hidden_state"]   (T, text_dim)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from timegrpo.detr.config import CONCEPTS, FeatureSynthConfig
from timegrpo.spans import span_iou


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def place_events(rng: np.random.Generator, duration: float, n: int, lo: float, hi: float) -> list[tuple[float, float]]:
    """``n`` non-overlapping windows (seconds, 0.1 s resolution) of length in ``[lo, min(hi, 0.8 duration / n)]``
    inside ``[0, duration]``, in random order, separated by random gaps.

    >>> w = place_events(np.random.default_rng(0), 40.0, 3, 4.0, 10.0)
    >>> len(w), all(0 <= s < e <= 40.0 for s, e in w)
    (3, True)
    """
    lengths = rng.uniform(lo, max(lo, min(hi, 0.8 * duration / n)), size=n)
    slack = duration - lengths.sum()
    gaps = rng.dirichlet(np.ones(n + 1)) * slack
    out, t = [], 0.0
    for length, gap in zip(lengths, gaps[:-1]):
        s = round(t + gap, 1)
        e = min(round(s + length, 1), math.floor(duration * 10) / 10)
        out.append((s, e))
        t = s + length
    order = rng.permutation(n)
    return [out[i] for i in order]


def clip_overlap(windows: list[tuple[float, float]], n_clips: int, clip_len: float) -> np.ndarray:
    """``(n_windows, n_clips)``: the fraction of each clip that lies inside each window.

    >>> clip_overlap([(1.0, 4.0)], 3, 2.0).tolist()
    [[0.5, 1.0, 0.0]]
    """
    starts = np.arange(n_clips) * clip_len
    out = np.zeros((len(windows), n_clips))
    for i, (s, e) in enumerate(windows):
        out[i] = np.clip(np.minimum(starts + clip_len, e) - np.maximum(starts, s), 0, None) / clip_len
    return out


def _video(rng: np.random.Generator, cfg: FeatureSynthConfig, dirs: list[np.ndarray], concepts: np.ndarray,
           windows: list[tuple[float, float]], n_clips: int) -> list[np.ndarray]:
    cover = clip_overlap(windows, n_clips, cfg.clip_len)  # (E, L)
    feats = []
    for f, dim in enumerate(cfg.video_dims):
        scale = cfg.noise * math.sqrt(48 / dim)
        x = scale * rng.standard_normal((n_clips, dim)) + cfg.scene * _unit(rng, 1, dim)
        x += cfg.amplitude * cover.T @ dirs[f][concepts]
        feats.append(x.astype(np.float32))
    return feats


def _query(rng: np.random.Generator, cfg: FeatureSynthConfig, text_dirs: np.ndarray, vocab: np.ndarray,
           concept: int) -> np.ndarray:
    n = int(rng.integers(cfg.min_tokens, cfg.max_tokens + 1))
    tokens = vocab[rng.integers(0, len(vocab), size=n)].copy()
    noise = cfg.text_noise * math.sqrt(32 / cfg.text_dim)
    tokens[int(rng.integers(0, n))] = text_dirs[concept] + noise * rng.standard_normal(cfg.text_dim)
    return tokens.astype(np.float32)


def _events(rng: np.random.Generator, cfg: FeatureSynthConfig, duration: float,
            ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concepts (distinct, except that with ``repeat_prob`` the first one occurs a second time) and their windows."""
    n = int(rng.integers(cfg.events_per_video[0], cfg.events_per_video[1] + 1))
    concepts = rng.choice(cfg.n_concepts, size=n, replace=False)
    if rng.random() < cfg.repeat_prob:
        concepts = np.append(concepts, concepts[0])
    return concepts, place_events(rng, duration, len(concepts), cfg.min_event, cfg.max_event)


def _saliency(rng: np.random.Generator, cover: np.ndarray) -> tuple[list[int], list[list[int]]]:
    ids = [int(i) for i in np.nonzero(cover > 0)[0]]
    scores = [[int(np.clip(round(4 * cover[i] + rng.normal(0, 0.6)), 0, 4)) for _ in range(3)] for i in ids]
    return ids, scores


def jitter_windows(rng: np.random.Generator, windows: list[tuple[float, float]], duration: float, jitter: float,
                   ) -> list[tuple[float, float]]:
    """Annotation noise: each boundary moved by ``U(-jitter, jitter)`` seconds (0.1 s resolution), clipped to
    ``[0, duration]``, the end kept at least 0.5 s after the start. The features keep the true windows.

    >>> w = jitter_windows(np.random.default_rng(0), [(4.0, 10.0)], 20.0, 2.0)
    >>> w, all(2.0 <= s <= 6.0 and 8.0 <= e <= 12.0 for s, e in w)
    ([(4.5, 9.1)], True)
    """
    out = []
    for s, e in windows:
        a, b = (round(float(x + rng.uniform(-jitter, jitter)), 1) for x in (s, e))
        a = min(max(a, 0.0), duration - 0.5)
        out.append((a, min(max(b, a + 0.5), duration)))
    return out


def synthesize(out: str | Path, cfg: FeatureSynthConfig) -> dict[str, Any]:
    """Write the benchmark under ``out``; return a summary (queries per split, feature dims, paths, and the mean
    IoU of the jittered labels with the true windows when ``label_jitter`` > 0)."""
    out = Path(out)
    rng = np.random.default_rng(cfg.seed)
    noise_rng = np.random.default_rng([cfg.seed, 1])  # its own stream: the clean data do not depend on the noise
    label_ious: list[float] = []
    dirs = [_unit(rng, cfg.n_concepts, d) for d in cfg.video_dims]
    text_dirs = _unit(rng, cfg.n_concepts, cfg.text_dim)
    vocab = _unit(rng, 40, cfg.text_dim)
    types = [f"f{i}" for i in range(len(cfg.video_dims))]
    for name in [*types, "text"]:
        (out / "features" / name).mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    bounds = np.cumsum([0.0, *cfg.splits]) * cfg.n_videos
    split_names = ("train", "val", "test")
    counts = dict.fromkeys(split_names, 0)
    files = {s: open(out / "annotations" / f"{s}.jsonl", "w", encoding="utf-8") for s in split_names}  # noqa: SIM115
    qid, multi = 0, 0
    try:
        for v in range(cfg.n_videos):
            split = split_names[int(np.searchsorted(bounds[1:], v, side="right"))]
            n_clips = int(rng.integers(cfg.min_clips, cfg.max_clips + 1))
            duration = float(n_clips * cfg.clip_len)  # whole clips, as QVHighlights (150 s = 75 x 2 s)
            concepts, windows = _events(rng, cfg, duration)
            vid = f"synth{v:05d}"
            for name, x in zip(types, _video(rng, cfg, dirs, concepts, windows, n_clips)):
                np.savez(out / "features" / name / f"{vid}.npz", features=x)
            for k in dict.fromkeys(int(c) for c in concepts):  # one query per distinct concept, in order
                mine = [w for c, w in zip(concepts, windows) if int(c) == k]
                np.savez(out / "features" / "text" / f"qid{qid}.npz",
                         last_hidden_state=_query(rng, cfg, text_dirs, vocab, k))
                ids, scores = _saliency(rng, clip_overlap(mine, n_clips, cfg.clip_len).max(axis=0))
                if cfg.label_jitter > 0 and split in cfg.label_noise_splits:  # noisy labels, saliency from them
                    noisy = jitter_windows(noise_rng, mine, duration, cfg.label_jitter)
                    label_ious += [span_iou(w, t) for w, t in zip(noisy, mine)]
                    mine = noisy
                    ids, scores = _saliency(noise_rng, clip_overlap(mine, n_clips, cfg.clip_len).max(axis=0))
                rec = {"qid": qid, "query": CONCEPTS[k], "duration": duration, "vid": vid,
                       "relevant_clip_ids": ids, "saliency_scores": scores,
                       "relevant_windows": [[a, b] for a, b in sorted(mine)]}
                files[split].write(json.dumps(rec) + "\n")
                counts[split] += 1
                multi += len(mine) > 1
                qid += 1
    finally:
        for f in files.values():
            f.close()
    summary = {"out": str(out), "queries": counts, "multi_window_queries": multi, "video_feature_types": types,
               "video_dims": cfg.video_dims, "text_dim": cfg.text_dim, "clip_len": cfg.clip_len, "config": asdict(cfg),
               "label_iou": float(np.mean(label_ious)) if label_ious else 1.0}
    (out / "synth_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
