"""``timegrpo detr features``: CLIP clip features of videos and CLIP token features of queries, written in the
lighthouse / Moment-DETR layout that :mod:`timegrpo.detr.features` reads (``timegrpo detr train``).

What is computed, for an annotation file (any format :func:`timegrpo.data.formats.load_annotations` reads) and
its video folder:

* **Clips.** A video of decoded duration ``D`` (frames / fps) is cut into ``L = ceil(D / clip_len)`` clips of
  ``clip_len`` seconds (the last one may be shorter). Frames are sampled by :func:`timegrpo.data.video.
  sample_frames` (the decoder and resize rule the models see), ``frames_per_clip`` per clip, evenly spaced at the
  centres of equal sub-intervals (one frame: the clip's centre), a chunk of clips per decode so memory stays
  bounded whatever the length. Each frame goes through the CLIP image processor (resize, centre crop,
  normalise) and ``visual_projection(vision_model(.).pooler_output)`` (``encode_image`` of OpenAI's CLIP, as
  Moment-DETR's ``run_on_video`` and lighthouse extract it); a clip's feature is the mean over the frames that
  fall inside it (the nearest frame when none does), then L2-normalised: ``{out}/clip/{vid}.npz["features"]``,
  ``(L, D)`` float32.
* **Queries.** ``text_projection(text_model(tokens).last_hidden_state)`` for every token of the query (start
  and end tokens included, padding excluded, at most 77 tokens), each row L2-normalised:
  ``{out}/clip_text/qid{qid}.npz["last_hidden_state"]``, ``(T, D)`` float32 (Moment-DETR's ``encode_text``).

Normalisation is :func:`timegrpo.detr.features.l2_normalize`, the reader's own, so the reader (which normalises
again) returns exactly the stored rows. Departure from Moment-DETR's ``run_on_video``: frames come from our video
code (decord, ``sample_frames``), not ffmpeg at ``1 / clip_len`` fps with a 224 centre crop, so the first frame
of a clip is its centre rather than its start; CLIP's own processor crops.

Every file is written to a temporary name and renamed, so a killed run leaves no partial file; a rerun skips
videos and queries whose files exist (``features.json`` records the settings, and a rerun with other settings
stops unless ``overwrite``). Videos that cannot be read follow ``on_bad``: stop naming the file (``error``), or
leave out, count and list in ``skipped.jsonl`` (``skip``).
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from timegrpo.data.schema import Sample
from timegrpo.detr.config import FeatureExtractConfig
from timegrpo.detr.features import l2_normalize
from timegrpo.errors import UserError

#: Sub-folders of ``out`` (lighthouse's names): video features, text features.
VIDEO_DIR, TEXT_DIR = "clip", "clip_text"
#: Pixel bounds of the sampled frames before CLIP's processor (which resizes and crops to its input size).
FRAME_MIN_PIXELS, FRAME_MAX_PIXELS = 224 * 224, 448 * 448
#: What ``features.json`` must agree on for a rerun to add to a folder.
SETTINGS = ("model", "clip_len", "frames_per_clip")


class FeatureExtractionError(UserError, RuntimeError):
    """A feature folder or input that cannot be used as given; the message says what to do."""


# ----------------------------------------------------------------------------------------------- pure helpers


def even_up(n: int) -> int:
    """The smallest even number >= ``n`` (qwen-vl-utils samples an even number of frames)."""
    return n + (n % 2)


def n_clips(duration: float, clip_len: float) -> int:
    """``ceil(duration / clip_len)`` (at least 1), tolerant of float noise.

    >>> n_clips(35.15, 2.0), n_clips(30.0, 2.0), n_clips(30.0000001, 2.0), n_clips(0.4, 2.0)
    (18, 15, 15, 1)
    """
    return max(1, math.ceil(duration / clip_len - 1e-6))


@dataclass(frozen=True)
class Chunk:
    """Clips ``[c0, c1)`` decoded together: ``nframes`` frames evenly spread from ``start`` to ``end`` seconds."""

    c0: int
    c1: int
    start: float
    end: float
    nframes: int


def _frame_range(start: float, end: float, n_frames: int, fps: float) -> int:
    """How many decoder frames qwen-vl-utils' range ``[ceil(start fps), min(floor(end fps), N - 1)]`` holds."""
    first = math.ceil(max(0.0, start) * fps)
    last = min(math.floor(min(end, n_frames / fps) * fps), n_frames - 1)
    return last - first + 1


def plan_chunks(n_frames: int, fps: float, clip_len: float, frames_per_clip: int, chunk_clips: int) -> list[Chunk]:
    """The decode plan of a video of ``n_frames`` at ``fps``: chunks of ``chunk_clips`` clips (the last one
    at least 2 clips when the video has 2), each sampled at the centres of ``frames_per_clip`` equal parts of its
    clips; when that range holds fewer decoder frames than needed, the chunk's whole span is sampled with as
    many frames as it has (rounded down to even). Raises :class:`FeatureExtractionError` for < 2 frames.

    >>> [(c.c0, c.c1, c.start, c.end, c.nframes) for c in plan_chunks(300, 10.0, 2.0, 1, 8)]
    [(0, 8, 1.0, 15.0, 8), (8, 15, 17.0, 29.0, 8)]
    >>> [(c.c0, c.c1, c.nframes) for c in plan_chunks(255, 10.0, 2.0, 1, 4)]  # 13 clips: no 1-clip chunk
    [(0, 4, 4), (4, 8, 4), (8, 11, 4), (11, 13, 2)]
    >>> plan_chunks(3, 1.0, 2.0, 4, 8)  # 4 frames a clip asked, 3 in the file: its whole span, 2 frames
    [Chunk(c0=0, c1=2, start=0.0, end=3.0, nframes=2)]
    """
    duration = n_frames / fps
    total = n_clips(duration, clip_len)
    if n_frames < 2:
        raise FeatureExtractionError(f"{n_frames} decoded frame(s): a video needs at least 2")
    bounds = list(range(0, total, chunk_clips)) + [total]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 2:
        bounds[-2] -= 1
    chunks = []
    for c0, c1 in zip(bounds, bounds[1:]):
        start = (c0 + 0.5 / frames_per_clip) * clip_len
        end = min((c1 - 0.5 / frames_per_clip) * clip_len, duration)
        want = even_up((c1 - c0) * frames_per_clip)
        if _frame_range(start, end, n_frames, fps) < want:
            start, end = c0 * clip_len, min(c1 * clip_len, duration)
            want = min(want, _frame_range(start, end, n_frames, fps) // 2 * 2)
        chunks.append(Chunk(c0, c1, start, end, max(want, 2)))
    return chunks


def pool_clips(times: Sequence[float], feats: np.ndarray, c0: int, c1: int, clip_len: float) -> np.ndarray:
    """``(c1 - c0, D)``: clip ``c`` is the mean of the rows of ``feats`` whose time falls in
    ``[c clip_len, (c + 1) clip_len)`` (times outside ``[c0, c1)`` count for the nearest end clip), or the row
    nearest to its centre when none does.

    >>> pool_clips([1.0, 1.5, 5.0], np.array([[1.0, 0], [3.0, 0], [0, 2.0]]), 0, 3, 2.0).tolist()
    [[2.0, 0.0], [3.0, 0.0], [0.0, 2.0]]
    """
    t = np.asarray(times, dtype=np.float64)
    which = np.clip(np.floor(t / clip_len).astype(int), c0, c1 - 1)
    out = np.zeros((c1 - c0, feats.shape[1]), dtype=np.float64)
    for c in range(c0, c1):
        hit = which == c
        out[c - c0] = feats[hit].mean(0) if hit.any() else feats[int(np.argmin(abs(t - (c + 0.5) * clip_len)))]
    return out.astype(np.float32)


def save_npz_atomic(path: Path, key: str, array: np.ndarray) -> None:
    """``np.savez`` of ``{key: array}`` through a temporary file beside ``path`` and a rename."""
    buf = io.BytesIO()
    np.savez(buf, **{key: array})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def has_array(path: Path, key: str) -> bool:
    """``path`` is a complete ``.npz`` holding ``key`` (a file a rerun may keep: every member's CRC checks)."""
    import zipfile

    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return f"{key}.npy" in zf.namelist() and zf.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def say(msg: str) -> None:
    sys.stderr.write(f"timegrpo detr features: {msg}\n")
    sys.stderr.flush()


# ----------------------------------------------------------------------------------------------- the encoder


class ClipEncoder:
    """A CLIP model with its image processor and tokenizer: frames -> projected image features, queries ->
    projected token features (see the module docstring)."""

    def __init__(self, name: str, device: str) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        from timegrpo.detr.train import pick_device

        self.device = pick_device(device)
        try:
            self.model = CLIPModel.from_pretrained(name, dtype=torch.float32).to(self.device).eval()
            self.images = AutoImageProcessor.from_pretrained(name)
            self.tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as err:  # not a folder, not on the Hub, or offline without a cached copy
            raise FeatureExtractionError(f"cannot load the CLIP model {name!r} ({err}); pass --model a local "
                                         "folder or a Hub id reachable from here") from None
        self.tokenizer.padding_side = "right"
        self.max_tokens = min(int(self.model.config.text_config.max_position_embeddings),
                              int(self.tokenizer.model_max_length))

    @property
    def dim(self) -> int:
        return int(self.model.config.projection_dim)

    def encode_frames(self, frames: Any) -> np.ndarray:
        """``(T, C, H, W)`` frames in [0, 255] -> ``(T, D)`` float32 ``encode_image`` features (not normalised)."""
        import torch

        uint8 = frames.round().clamp(0, 255).to(torch.uint8)
        pixels = self.images(images=list(uint8), return_tensors="pt")["pixel_values"].to(self.device)
        with torch.inference_mode():
            pooled = self.model.vision_model(pixel_values=pixels).pooler_output
            return self.model.visual_projection(pooled).float().cpu().numpy()

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        """One ``(T_i, D)`` float32 array of token features per query (padding cut off, not normalised)."""
        import torch

        enc = self.tokenizer(list(queries), padding=True, truncation=True, max_length=self.max_tokens,
                             return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model.text_model(input_ids=enc["input_ids"],
                                           attention_mask=enc["attention_mask"]).last_hidden_state
            tokens = self.model.text_projection(hidden).float().cpu().numpy()
        lengths = enc["attention_mask"].sum(1).tolist()
        return [tokens[i, : int(n)] for i, n in enumerate(lengths)]


# ----------------------------------------------------------------------------------------------- the command


def _sampling(nframes: int) -> Any:
    from timegrpo.data.video import VideoSampling

    return VideoSampling(fps=None, nframes=nframes, max_frames=None, min_pixels=FRAME_MIN_PIXELS,
                         max_pixels=FRAME_MAX_PIXELS, total_pixels=None)


def video_features(path: str, encoder: ClipEncoder, cfg: FeatureExtractConfig) -> np.ndarray:
    """``(L, D)`` L2-normalised clip features of one video (see the module docstring)."""
    from timegrpo.data.video import sample_frames

    probe = sample_frames(path, _sampling(2))
    chunk_clips = max(1, cfg.batch_size // cfg.frames_per_clip)
    parts = []
    for ch in plan_chunks(probe.clip_frames, probe.video_fps, cfg.clip_len, cfg.frames_per_clip, chunk_clips):
        vf = sample_frames(path, _sampling(ch.nframes), video_start=ch.start, video_end=ch.end)
        times = [i / vf.video_fps for i in vf.frame_indices]
        parts.append(pool_clips(times, encoder.encode_frames(vf.frames), ch.c0, ch.c1, cfg.clip_len))
    return l2_normalize(np.concatenate(parts)).astype(np.float32)


def _check_name(kind: str, name: str, path: Path) -> None:
    """A vid or qid becomes a file name: it must not leave its folder."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise FeatureExtractionError(f"{path}: {kind} {name!r} cannot name a feature file (a path separator, a "
                                     "leading dot or empty); rename it in the annotations")


def _check_settings(out: Path, cfg: FeatureExtractConfig) -> None:
    """A folder written with other settings is not added to (its files would not match)."""
    manifest = out / "features.json"
    if cfg.overwrite or not manifest.is_file():
        return
    old = json.loads(manifest.read_text(encoding="utf-8"))
    diff = [f"{k} {old.get(k)!r} (now {getattr(cfg, k)!r})" for k in SETTINGS if old.get(k) != getattr(cfg, k)]
    if diff:
        raise FeatureExtractionError(f"{manifest}: the features there were made with " + ", ".join(diff)
                                     + "; use another --out, or --overwrite to recompute them all")


def _videos(samples: Sequence[Sample], path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in samples:
        _check_name("vid", s.vid, path)
        _check_name("qid", s.qid, path)
        if s.video is not None:
            out.setdefault(s.vid, s.video)
    return out


def _extract_videos(videos: dict[str, str], encoder: ClipEncoder, cfg: FeatureExtractConfig,
                    folder: Path) -> tuple[int, list[dict[str, str]]]:
    """Write the missing ``{vid}.npz``; ``(videos computed, skipped [{vid, path, kind, error}])``."""
    from timegrpo.data.video import VideoError

    done, skipped = 0, []
    for i, (vid, path) in enumerate(videos.items(), 1):
        dest = folder / f"{vid}.npz"
        if not cfg.overwrite and has_array(dest, "features"):
            continue
        try:
            feats = video_features(path, encoder, cfg)
        except (VideoError, FeatureExtractionError) as err:
            if cfg.on_bad == "error":
                raise FeatureExtractionError(f"{err} (vid {vid}); pass --on-bad skip to leave such videos out, "
                                             "counted in skipped.jsonl") from None
            skipped.append({"vid": vid, "path": path, "kind": getattr(err, "kind", "unreadable_video"),
                            "error": str(err)})
            continue
        save_npz_atomic(dest, "features", feats)
        done += 1
        say(f"{vid} ({i}/{len(videos)}): {len(feats)} clips")
    return done, skipped


def _extract_queries(samples: Sequence[Sample], encoder: ClipEncoder, cfg: FeatureExtractConfig,
                     folder: Path) -> int:
    """Write the missing ``qid{qid}.npz``; how many were computed."""
    todo = [s for s in samples if cfg.overwrite or not has_array(folder / f"qid{s.qid}.npz", "last_hidden_state")]
    for k in range(0, len(todo), cfg.batch_size):
        batch = todo[k : k + cfg.batch_size]
        for s, tokens in zip(batch, encoder.encode_queries([s.query for s in batch])):
            save_npz_atomic(folder / f"qid{s.qid}.npz", "last_hidden_state", l2_normalize(tokens).astype(np.float32))
    return len(todo)


def extract_features(cfg: FeatureExtractConfig) -> dict[str, Any]:
    """Run ``timegrpo detr features``; returns the summary also written to ``{out}/features.json``."""
    from timegrpo.data.formats import load_annotations
    from timegrpo.evaluate.config import require
    from timegrpo.evaluate.predictions import write_atomic

    require(cfg, "videos", "annotations", "out")
    assert cfg.videos is not None and cfg.annotations is not None and cfg.out is not None
    out = Path(cfg.out)
    _check_settings(out, cfg)
    samples, report = load_annotations(cfg.annotations, cfg.format, on_bad=cfg.on_bad, durations=cfg.durations,
                                       video_dir=cfg.videos)
    videos = _videos(samples, Path(cfg.annotations))
    (out / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    (out / TEXT_DIR).mkdir(parents=True, exist_ok=True)
    encoder = ClipEncoder(cfg.model, cfg.device)
    n_videos, skipped = _extract_videos(videos, encoder, cfg, out / VIDEO_DIR)
    left_out = {s["vid"] for s in skipped}
    kept = [s for s in samples if s.vid in videos and s.vid not in left_out]
    n_queries = _extract_queries(kept, encoder, cfg, out / TEXT_DIR)
    summary = {
        "model": cfg.model, "clip_len": cfg.clip_len, "frames_per_clip": cfg.frames_per_clip, "dim": encoder.dim,
        "annotations": str(cfg.annotations), "format": report.format,
        "videos": len(videos) - len(skipped), "queries": len(kept), "computed_videos": n_videos,
        "computed_queries": n_queries, "skipped_videos": len(skipped),
        "annotation_anomalies": dict(report.counts), "annotation_dropped": report.n_dropped,
        "detr": {"data.video_feat_dirs": [str(out / VIDEO_DIR)], "data.text_feat_dir": str(out / TEXT_DIR),
                 "data.clip_len": cfg.clip_len, "data.annotation_format": report.format},
    }
    write_atomic(out / "features.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(out / "skipped.jsonl", "".join(json.dumps(s) + "\n" for s in skipped))
    return summary
