"""Pre-extracted clip features in the lighthouse / Moment-DETR layout, checked, padded and batched.

Layout (what lighthouse ships and :mod:`timegrpo.detr.synth` writes)::

    {video_feat_dir}/{vid}.npz["features"]       (L, D_k) per feature type k (e.g. slowfast 2304, clip 512)
    {text_feat_dir}/qid{qid}.npz["last_hidden_state"]   (Lq, D_t) token features (TACoS: "{qid}.npz")

A video's clip features are L2-normalised row-wise per type, cut to the shortest type, concatenated along the
channel axis, truncated to ``max_v_len`` clips and (optionally) extended with the temporal encoding
``[i/L, (i+1)/L]`` (so 2304 + 512 + 2 = 2818 for QVHighlights). Query tokens are truncated to ``max_q_len`` and
L2-normalised. Ground-truth windows (seconds) become normalised ``(center, width)`` spans over the feature
length ``L * clip_len``; predictions map back with the same factor (departure from Moment-DETR, which divides
by ``L * clip_len`` in training but multiplies by ``duration`` at inference).

Anomalies are counted per kind, like the annotation readers: ``missing_video_feature``,
``missing_text_feature``, ``length_mismatch`` (feature length vs duration/clip_len beyond a tolerance),
``window_beyond_features`` (every window starts after the last clip, e.g. after ``max_v_len`` truncation),
``no_window`` (a training query without ground truth) are *bad* (``on_bad=error`` raises naming the file and
query; ``skip`` drops and counts them); ``window_clipped`` (a window end past the last clip, clipped) and
``window_dropped`` (one of several windows starts after the last clip and is not a target) are counted and
the query is kept.
"""

from __future__ import annotations

import math
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from timegrpo.data.schema import Sample
from timegrpo.detr.config import DetrDataConfig

BAD_KINDS = ("missing_video_feature", "missing_text_feature", "length_mismatch", "window_beyond_features", "no_window")


def l2_normalize(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Divide each row by its L2 norm (rows of zeros stay zero).

    >>> l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def temporal_encoding(length: int) -> np.ndarray:
    """``(L, 2)`` rows ``[i/L, (i+1)/L]``: where each clip starts and ends, as a fraction of the video.

    >>> temporal_encoding(4).tolist()
    [[0.0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1.0]]
    """
    start = np.arange(length, dtype=np.float32) / max(length, 1)
    return np.stack([start, start + 1.0 / max(length, 1)], axis=1).astype(np.float32)


def prepare_video(parts: Sequence[np.ndarray], max_len: int | None = None, tef: bool = True) -> np.ndarray:
    """Raw per-type clip features ``[(L_k, D_k), ...]`` -> the model's ``(L, sum D_k [+ 2])`` float32 input:
    each type L2-normalised row-wise, all cut to the shortest (and to ``max_len``), concatenated, plus the
    temporal encoding when ``tef``. Use it to feed :meth:`GirlDetr.predict` features extracted elsewhere.

    >>> prepare_video([np.ones((3, 2)), np.ones((4, 1))], max_len=2).astype(float).round(3).tolist()
    [[0.707, 0.707, 1.0, 0.0, 0.5], [0.707, 0.707, 1.0, 0.5, 1.0]]
    """
    normed = [l2_normalize(np.asarray(x, dtype=np.float32)) for x in parts]
    n = min(len(x) for x in normed)
    if max_len is not None:
        n = min(n, max_len)
    feats = np.concatenate([x[:n] for x in normed], axis=1)
    if tef:
        feats = np.concatenate([feats, temporal_encoding(n)], axis=1)
    return feats.astype(np.float32)


def prepare_text(tokens: np.ndarray, max_len: int = 32) -> np.ndarray:
    """Token features ``(T, D)`` (or one ``(D,)`` vector) -> the first ``max_len`` rows, L2-normalised, float32."""
    x = np.asarray(tokens, dtype=np.float32)
    x = x.reshape(1, -1) if x.ndim == 1 else x
    return l2_normalize(x[:max_len])


def npz_shape(path: Path, key: str) -> tuple[int, ...]:
    """Shape of array ``key`` in an ``.npz`` without reading the data (only the .npy header is decompressed)."""
    with zipfile.ZipFile(path) as zf:
        name = f"{key}.npy"
        if name not in zf.namelist():
            keys = ", ".join(n[:-4] for n in zf.namelist())
            raise KeyError(f"{path}: no array {key!r} (has: {keys}); set data.video_key / data.text_key")
        with zf.open(name) as f:
            major, _ = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = reader(f)
    return tuple(int(s) for s in shape)


def windows_to_spans(windows: Sequence[Sequence[float]], total: float) -> np.ndarray:
    """``[(s, e)]`` seconds -> ``(G, 2)`` normalised ``(center, width)`` over ``total`` seconds, clipped to [0, 1].

    >>> windows_to_spans([(2.0, 6.0), (7.0, 12.0)], total=8.0).tolist()
    [[0.5, 0.5], [0.9375, 0.125]]
    """
    xx = np.clip(np.asarray(windows, dtype=np.float64).reshape(-1, 2) / total, 0.0, 1.0)
    return np.stack([(xx[:, 0] + xx[:, 1]) / 2, xx[:, 1] - xx[:, 0]], axis=1).astype(np.float32)


def saliency_targets(sample: Sample, length: int, clip_len: float) -> tuple[np.ndarray, bool]:
    """Per-clip saliency ``(L,)``: the rater sum at ``relevant_clip_ids`` (QVHighlights ``saliency_scores``) when
    present (second value True), else 1 for clips overlapping a window and 0 elsewhere (second value False).

    >>> s = Sample("1", "v", None, 8.0, "q", [(2.0, 5.0)], meta={"relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [4, 4, 4]]})
    >>> saliency_targets(s, 4, 2.0)[0].tolist()
    [0.0, 6.0, 12.0, 0.0]
    >>> saliency_targets(Sample("2", "v", None, 8.0, "q", [(2.0, 5.0)]), 4, 2.0)[0].tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    out = np.zeros(length, dtype=np.float32)
    ids, scores = sample.meta.get("relevant_clip_ids"), sample.meta.get("saliency_scores")
    if ids is not None and scores is not None and len(ids) == len(scores):
        for i, sc in zip(ids, scores):
            if 0 <= int(i) < length:
                out[int(i)] = float(np.sum(sc))
        return out, True
    for s, e in sample.windows:
        lo, hi = int(math.floor(s / clip_len)), int(math.ceil(e / clip_len))
        out[max(lo, 0) : min(max(hi, lo + 1), length)] = 1.0
    return out, False


@dataclass
class FeatureReport:
    """What the feature checks found: ``counts`` per anomaly kind, a few ``examples`` each, the annotation reader's
    own counts, and how many queries were ``kept``/``dropped``."""

    split: str
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    annotation_counts: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    dropped: int = 0

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        ex = self.examples.setdefault(kind, [])
        if len(ex) < 3:
            ex.append(message)

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.counts.items())] or ["no feature anomalies"]
        ann = [f"{k}={v}" for k, v in sorted(self.annotation_counts.items()) if v]
        return (f"[{self.split}] kept {self.kept}, dropped {self.dropped}; " + ", ".join(parts)
                + (f"; annotations: {', '.join(ann)}" if ann else ""))


class FeatureStore:
    """Reads features for the videos and queries of one split, keeping prepared video features in an LRU cache of
    ``cfg.cache_videos`` videos (None: all of them, the cache is sized to the split; 0: none)."""

    def __init__(self, cfg: DetrDataConfig, resolve: Callable[[str | None], Path | None]) -> None:
        if not cfg.video_feat_dirs:
            raise ValueError("data.video_feat_dirs is empty: list one directory per video feature type")
        if cfg.text_feat_dir is None:
            raise ValueError("data.text_feat_dir is not set")
        self.cfg = cfg
        self.video_dirs = [resolve(d) for d in cfg.video_feat_dirs]
        self.text_dir = resolve(cfg.text_feat_dir)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def video_paths(self, vid: str) -> list[Path]:
        return [d / f"{vid}.npz" for d in self.video_dirs]  # type: ignore[operator]

    def text_path(self, qid: str) -> Path:
        return self.text_dir / self.cfg.text_file.format(qid=qid)  # type: ignore[operator]

    def raw_length(self, vid: str) -> int:
        """Clips available for ``vid`` before truncation: the shortest feature type."""
        return min(npz_shape(p, self.cfg.video_key)[0] for p in self.video_paths(vid))

    def length(self, vid: str) -> int:
        n = self.raw_length(vid)
        return n if self.cfg.max_v_len is None else min(n, self.cfg.max_v_len)

    def video(self, vid: str) -> np.ndarray:
        """``(L, D)`` float32: per-type L2-normalised, concatenated, truncated, plus the temporal encoding."""
        if vid in self._cache:
            self._cache.move_to_end(vid)
            return self._cache[vid]
        parts = []
        for p in self.video_paths(vid):
            with np.load(p) as z:
                parts.append(z[self.cfg.video_key])
        feats = prepare_video(parts, self.cfg.max_v_len, self.cfg.temporal_encoding)
        limit = self.cfg.cache_videos
        if limit != 0:
            self._cache[vid] = feats
            while limit is not None and len(self._cache) > limit:
                self._cache.popitem(last=False)
        return feats

    def preload(self, vids: Sequence[str]) -> int:
        """Read ``vids`` into the cache (in order, each once); return how many videos the cache holds."""
        for vid in dict.fromkeys(vids):
            self.video(vid)
        return len(self._cache)

    def text(self, qid: str) -> np.ndarray:
        """``(Lq, D_t)`` float32 L2-normalised token features (at most ``max_q_len`` tokens)."""
        with np.load(self.text_path(qid)) as z:
            return prepare_text(z[self.cfg.text_key], self.cfg.max_q_len)


def _problems(s: Sample, store: FeatureStore, require_windows: bool) -> list[tuple[str, str]]:
    """The bad anomalies of one query as ``(kind, message)`` (empty list: usable)."""
    cfg = store.cfg
    where = f"qid {s.qid} (vid {s.vid})"
    missing = [str(p) for p in store.video_paths(s.vid) if not p.is_file()]
    if missing:
        return [("missing_video_feature", f"{where}: no feature file {missing[0]}")]
    if not store.text_path(s.qid).is_file():
        return [("missing_text_feature", f"{where}: no text feature file {store.text_path(s.qid)}")]
    out = []
    raw = store.raw_length(s.vid)
    if s.duration is not None and abs(raw - s.duration / cfg.clip_len) > cfg.length_tolerance:
        out.append(("length_mismatch", f"{where}: {raw} clips but duration {s.duration:g} s / clip_len "
                    f"{cfg.clip_len:g} s = {s.duration / cfg.clip_len:.1f} clips (tolerance "
                    f"{cfg.length_tolerance:g}); check data.clip_len or the feature files"))
    if not require_windows:  # prediction: the windows only score the output
        return out
    total = store.length(s.vid) * cfg.clip_len
    if not s.windows:
        out.append(("no_window", f"{where}: no ground-truth window"))
    if s.windows and all(a >= total for a, _ in s.windows):
        out.append(("window_beyond_features", f"{where}: every window starts after the features end at {total:g} s"))
    return out


def check_samples(samples: Sequence[Sample], store: FeatureStore, *, split: str, on_bad: str,
                  require_windows: bool) -> tuple[list[Sample], FeatureReport]:
    """Check every query against its feature files; return the kept queries and the counted report.

    With ``require_windows`` False (prediction) only the feature files and lengths are checked.
    ``on_bad="error"`` raises ``ValueError`` at the first bad query (naming it and the file);
    ``"skip"`` and ``"clip"`` drop bad queries and count each kind (no feature anomaly can be clipped).
    """
    report = FeatureReport(split=split)
    kept = []
    for s in samples:
        probs = _problems(s, store, require_windows)
        for kind, msg in probs:
            report.add(kind, msg)
        if probs:
            if on_bad == "error":
                raise ValueError(f"[{split}] {probs[0][1]}. Fix the data, or pass --data.on_bad skip to drop such "
                                 "queries (they are counted).")
            report.dropped += 1
            continue
        total = store.length(s.vid) * store.cfg.clip_len
        if require_windows and any(a >= total for a, _ in s.windows):
            report.add("window_dropped", f"qid {s.qid}: a window starting after {total:g} s is not a target")
        elif require_windows and any(e > total for _, e in s.windows):
            report.add("window_clipped", f"qid {s.qid}: window end past {total:g} s clipped")
        kept.append(s)
    report.kept = len(kept)
    return kept, report


class FeatureDataset(Dataset):
    """One item per query: features, normalised GT spans and saliency targets (see :func:`collate`)."""

    def __init__(self, samples: Sequence[Sample], store: FeatureStore, report: FeatureReport) -> None:
        self.samples = list(samples)
        self.store = store
        self.report = report
        self._preloaded = False

    def __len__(self) -> int:
        return len(self.samples)

    def preload(self) -> None:
        """Fill the video cache in this process (once), so that DataLoader workers forked afterwards share it
        instead of each reading (and caching) every video again; nothing when the cache is off."""
        if self.store.cfg.cache_videos != 0 and not self._preloaded:
            self.store.preload([s.vid for s in self.samples])
            self._preloaded = True

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        video = self.store.video(s.vid)
        length = len(video)
        total = length * self.store.cfg.clip_len
        windows = [(max(0.0, a), min(b, total)) for a, b in s.windows if a < total]
        sal, graded = saliency_targets(s, length, self.store.cfg.clip_len)
        return {
            "sample": s,
            "video": torch.from_numpy(video),
            "text": torch.from_numpy(self.store.text(s.qid)),
            "spans": torch.from_numpy(windows_to_spans(windows, total)) if windows else torch.zeros(0, 2),
            "saliency": torch.from_numpy(sal),
            "graded_saliency": graded,
        }

    @property
    def video_dim(self) -> int:
        return int(self[0]["video"].shape[1])

    @property
    def text_dim(self) -> int:
        return int(self[0]["text"].shape[1])


@dataclass
class Batch:
    """A padded batch. Masks are True on real (not padded) positions.

    video ``(B, L, Dv)``, video_mask ``(B, L)``, text ``(B, Lq, Dt)``, text_mask ``(B, Lq)``,
    spans ``(B, G, 2)`` normalised (center, width), span_mask ``(B, G)``, saliency ``(B, L)``,
    seconds ``(B,)`` = clips x clip_len (what normalised spans are relative to), samples: the queries.
    """

    video: torch.Tensor
    video_mask: torch.Tensor
    text: torch.Tensor
    text_mask: torch.Tensor
    spans: torch.Tensor
    span_mask: torch.Tensor
    saliency: torch.Tensor
    seconds: torch.Tensor
    samples: list[Sample]

    def to(self, device: torch.device | str) -> Batch:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(1, max(len(x) for x in seqs))
    out = seqs[0].new_zeros((len(seqs), n, *seqs[0].shape[1:]))
    mask = torch.zeros(len(seqs), n, dtype=torch.bool)
    for i, x in enumerate(seqs):
        out[i, : len(x)] = x
        mask[i, : len(x)] = True
    return out, mask


def make_collate(clip_len: float) -> Callable[[list[dict[str, Any]]], Batch]:
    """A collate function for :class:`FeatureDataset` items (``clip_len`` converts clips to seconds)."""

    def collate(items: list[dict[str, Any]]) -> Batch:
        video, vmask = _pad([it["video"] for it in items])
        text, tmask = _pad([it["text"] for it in items])
        spans, smask = _pad([it["spans"] for it in items])
        saliency, _ = _pad([it["saliency"] for it in items])
        seconds = vmask.sum(1).float() * clip_len
        return Batch(video, vmask, text, tmask, spans, smask, saliency, seconds, [it["sample"] for it in items])

    return collate


def load_split(cfg: DetrDataConfig, resolve: Callable[..., Path | None], split: str, *,
               require_windows: bool) -> FeatureDataset:
    """Read ``cfg.<split>`` annotations with :func:`timegrpo.data.formats.load_annotations`, check them against
    the feature files, and return the dataset (its ``.report`` holds the counts)."""
    from timegrpo.data.formats import load_annotations

    path = resolve(getattr(cfg, split), what=f"data.{split}")
    if path is None:
        raise ValueError(f"data.{split} is not set")
    if not path.is_file():
        raise FileNotFoundError(f"data.{split}: annotation file {path} does not exist")
    samples, ann_report = load_annotations(str(path), cfg.annotation_format, on_bad=cfg.on_bad)
    store = FeatureStore(cfg, resolve)
    kept, report = check_samples(samples, store, split=split, on_bad=cfg.on_bad, require_windows=require_windows)
    report.annotation_counts = dict(Counter(getattr(ann_report, "counts", {}) or {}))
    if not kept:
        raise ValueError(f"[{split}] no usable query left in {path}: {report.summary()}")
    return FeatureDataset(kept, store, report)
