"""The synthetic grounding benchmark: real H.264 mp4 files of simple scenes with exactly known event windows.

Each video is ``size x size`` pixels at ``fps`` frames per second, lasts a whole number of seconds drawn from
``[min_duration, max_duration]`` (so it has an even number of frames and qwen-vl-utils at ``fps`` samples every
frame: frame k is at ``k / fps`` seconds), and shows one coloured shape on a noisy grey background. One event
happens in frames ``[a, b)``, so its window is ``[a / fps, b / fps)`` in seconds, exact at frame resolution:

* ``appear``: the shape is visible only in the window (the default, and the setting SPEC section 5 found a
  1.3M-parameter model learns in minutes: 56x56, 2 fps, 8-20 s, about 55 visual tokens per video with
  :func:`recommended_sampling`);
* ``move``: the shape is always visible, still outside the window and moving inside it;
* ``recolor``: the shape is always visible and has another colour during the window.

Each event type has several query phrasings, drawn at random. Everything is drawn from
``numpy.random.default_rng([seed, index])`` per video, so a video does not depend on ``n`` or on the other
videos, and the same seed gives the same frames, annotations and (with the same PyAV/x264 build) bytes.

Layout written by :func:`generate`::

    DIR/videos/synth_00000.mp4 ...
    DIR/{train,val,test}.jsonl    moment_detr style: qid, query, duration, vid, relevant_windows, plus
                                  video (relative to DIR), clean_windows, event, shape, color
    DIR/synth_config.json         the config and counts

``label_jitter`` (seconds) perturbs the TRAIN windows only: each boundary moves by ``U(-j, j)``, the window
is clipped to ``[0, duration]`` and redrawn until it keeps at least one frame; the exact windows stay in
``clean_windows``. Noisy boundary labels are what SPEC section 5 says a demo needs to show what an IoU reward
adds over token-level SFT (which memorises the noise). Read a split with :func:`load_split`.

Planted partial annotations (VideoTG-R1's Boundary Reflection Agent, SPEC section 2): in a share
``partial_share`` of the videos (drawn per video from ``default_rng([seed, index, 2])``, so the choice does not
depend on n or the splits) the event happens twice: two occurrences of at least :data:`PARTIAL_MIN_EVENT`
seconds, at least :data:`PARTIAL_GAP` seconds apart (a video too short for that keeps one occurrence). A TRAIN
record then annotates one of them (drawn at random) and records the truth in ``planted_partial: true`` and
``other_window`` (the exact unannotated occurrence); val and test records annotate both, so held-out metrics
score against complete labels. Every record carries ``occurrences`` (1 or 2) and ``planted_partial``. Videos
with one occurrence are drawn exactly as without planting (same frames and bytes).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from timegrpo.registry import Registry

#: Event renderers by name: ``(rng, n_frames, config, occurrences=1) -> Event``.
EVENTS: Registry[Callable[..., Event]] = Registry("synthetic event")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 70, 235), "yellow": (240, 220, 30),
    "magenta": (220, 40, 220), "cyan": (30, 220, 220),
}
SHAPES = ("circle", "square", "triangle")
SPLITS = ("train", "val", "test")
#: Planted second occurrences: each occurrence lasts at least this many seconds...
PARTIAL_MIN_EVENT = 2.5
#: ...and the two are at least this many seconds apart (more than the +-1.5 s label jitter plus the Boundary
#: Reflection Agent's 1 s tolerance, so the unannotated occurrence stays outside the widened annotated window).
PARTIAL_GAP = 3.0

QUERIES: dict[str, tuple[str, ...]] = {
    "appear": ("the {color} {shape} appears", "a {color} {shape} is visible", "the {color} {shape} is on screen",
               "when does the {color} {shape} show up", "a {color} {shape} can be seen"),
    "move": ("the {color} {shape} moves", "the {color} {shape} slides across the frame",
             "a {color} {shape} is moving", "when does the {color} {shape} change position"),
    "recolor": ("the {shape} turns {color}", "the {shape} is {color}", "the {old} {shape} becomes {color}",
                "when is the {shape} coloured {color}"),
}


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`generate` writes."""

    n: int = field(default=200, metadata={"help": "number of videos over all splits"})
    seed: int = field(default=0, metadata={"help": "seed of every random draw"})
    val_size: int | None = field(default=None, metadata={"help": "videos in val (default 10% of n)"})
    test_size: int | None = field(default=None, metadata={"help": "videos in test (default 10% of n)"})
    events: tuple[str, ...] = field(default=("appear",), metadata={"help": "event types, drawn uniformly: "
                                                                           "appear, move, recolor"})
    size: int = field(default=56, metadata={"help": "frame width = height in pixels (even)"})
    fps: int = field(default=2, metadata={"help": "frames per second of the files"})
    min_duration: int = field(default=8, metadata={"help": "shortest video (whole seconds)"})
    max_duration: int = field(default=20, metadata={"help": "longest video (whole seconds)"})
    min_event: float = field(default=1.0, metadata={"help": "shortest event (seconds)"})
    max_event_frac: float = field(default=0.6, metadata={"help": "longest event as a fraction of the video"})
    noise: float = field(default=20.0, metadata={"help": "std of the background pixel noise (0-255 scale)"})
    label_jitter: float = field(default=0.0, metadata={"help": "train windows: +-U(jitter) seconds per boundary"})
    crf: int = field(default=18, metadata={"help": "x264 constant rate factor (lower = closer to the frames)"})
    partial_share: float = field(default=0.2, metadata={"help": "share of videos where the event happens twice; "
                                                               "train annotates one occurrence (planted partial)"})

    def __post_init__(self) -> None:
        unknown = [e for e in self.events if e not in EVENTS]
        if unknown or not self.events:
            raise ValueError(f"unknown events {unknown}; known: {', '.join(EVENTS.names())}")
        if self.size % 2 or self.size < 16:
            raise ValueError(f"size must be even and >= 16 (H.264 4:2:0), got {self.size}")
        if not 1 <= self.min_duration <= self.max_duration:
            raise ValueError(f"need 1 <= min_duration <= max_duration, got {self.min_duration}, {self.max_duration}")
        if self.fps < 1 or self.n < 1 or self.label_jitter < 0 or not 0 < self.max_event_frac <= 1:
            raise ValueError("need fps >= 1, n >= 1, label_jitter >= 0 and 0 < max_event_frac <= 1")
        if not 0 <= self.partial_share <= 1:
            raise ValueError(f"partial_share must be in [0, 1], got {self.partial_share}")
        if self.n_train < 0:
            raise ValueError(f"val_size + test_size ({self.n_val} + {self.n_test}) exceeds n = {self.n}")

    @property
    def n_val(self) -> int:
        return self.val_size if self.val_size is not None else round(self.n * 0.1)

    @property
    def n_test(self) -> int:
        return self.test_size if self.test_size is not None else round(self.n * 0.1)

    @property
    def n_train(self) -> int:
        return self.n - self.n_val - self.n_test


@dataclass
class Event:
    """A rendered video: ``frames (T, H, W, 3)`` uint8, the event's frame range ``[a, b)``, its query and fields;
    ``extra``: the frame ranges of further occurrences (a planted second one)."""

    frames: np.ndarray
    a: int
    b: int
    query: str
    info: dict[str, Any]
    extra: list[tuple[int, int]] = field(default_factory=list)


def recommended_sampling() -> Any:
    """The :class:`~timegrpo.data.video.VideoSampling` that feeds these videos to Qwen2/2.5-VL unresized:
    every frame at 2 fps, 56x56 pixels (4 merged visual tokens per pair of frames)."""
    from timegrpo.data.video import VideoSampling

    return VideoSampling(fps=2.0, min_pixels=56 * 56, max_pixels=56 * 56, total_pixels=None)


# ----------------------------------------------------------------------------------------------- drawing


def _mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean ``(size, size)`` mask of a shape centred at (cx, cy) with half-size r."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":
        return (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    # triangle pointing up: inside when below the two slanted edges and above the base
    top, base = cy - r, cy + r * 0.8
    half = (yy - top) / (base - top) * r
    return (yy >= top) & (yy <= base) & (np.abs(xx - cx) <= half)


def _background(rng: np.random.Generator, n: int, cfg: SynthConfig) -> np.ndarray:
    grey = rng.uniform(70, 150)
    noise = rng.normal(0.0, cfg.noise, size=(n, cfg.size, cfg.size, 1))
    return np.clip(grey + noise, 0, 255).repeat(3, axis=3)


def _window(rng: np.random.Generator, n_frames: int, cfg: SynthConfig) -> tuple[int, int]:
    lo = max(1, round(cfg.min_event * cfg.fps))
    hi = max(lo, int(cfg.max_event_frac * n_frames))
    length = int(rng.integers(lo, hi + 1))
    a = int(rng.integers(0, n_frames - length + 1))
    return a, a + length


def _two_windows(rng: np.random.Generator, n_frames: int, cfg: SynthConfig) -> list[tuple[int, int]]:
    """Two occurrences ``[a1, b1), [a2, b2)``: each at least :data:`PARTIAL_MIN_EVENT` s (and ``min_event``),
    at most ``max_event_frac`` of the video, at least :data:`PARTIAL_GAP` s apart; lengths and the three
    slacks (before, between, after) uniform. The caller checks :func:`fits_twice` first."""
    lo = max(1, round(cfg.min_event * cfg.fps), round(PARTIAL_MIN_EVENT * cfg.fps))
    gap = round(PARTIAL_GAP * cfg.fps)
    hi = max(lo, min(int(cfg.max_event_frac * n_frames), (n_frames - gap) // 2))
    l1, l2 = (int(x) for x in rng.integers(lo, hi + 1, size=2))
    c1, c2 = sorted(int(x) for x in rng.integers(0, n_frames - l1 - l2 - gap + 1, size=2))
    a2 = c1 + l1 + gap + (c2 - c1)
    return [(c1, c1 + l1), (a2, a2 + l2)]


def fits_twice(n_frames: int, cfg: SynthConfig) -> bool:
    """Whether two planted occurrences fit in ``n_frames`` (two shortest ones and the gap)."""
    lo = max(1, round(cfg.min_event * cfg.fps), round(PARTIAL_MIN_EVENT * cfg.fps))
    return 2 * lo + round(PARTIAL_GAP * cfg.fps) <= n_frames


def _windows(rng: np.random.Generator, n_frames: int, cfg: SynthConfig, occurrences: int) -> list[tuple[int, int]]:
    return [_window(rng, n_frames, cfg)] if occurrences == 1 else _two_windows(rng, n_frames, cfg)


def _object(rng: np.random.Generator, cfg: SynthConfig) -> tuple[str, str, float]:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    color = list(COLORS)[int(rng.integers(len(COLORS)))]
    r = rng.uniform(0.14, 0.2) * cfg.size
    return shape, color, float(r)


def _place(rng: np.random.Generator, r: float, size: int) -> tuple[float, float]:
    return float(rng.uniform(r + 1, size - r - 1)), float(rng.uniform(r + 1, size - r - 1))


def _query(rng: np.random.Generator, event: str, **names: str) -> str:
    options = QUERIES[event]
    return options[int(rng.integers(len(options)))].format(**names)


@EVENTS.register("appear")
def appear(rng: np.random.Generator, n_frames: int, cfg: SynthConfig, occurrences: int = 1) -> Event:
    """One shape, visible in frames [a, b) only (in each occurrence's frames)."""
    frames = _background(rng, n_frames, cfg)
    shape, color, r = _object(rng, cfg)
    wins = _windows(rng, n_frames, cfg, occurrences)
    m = _mask(shape, cfg.size, *_place(rng, r, cfg.size), r)
    for a, b in wins:
        frames[a:b, m] = COLORS[color]
    return Event(frames.astype(np.uint8), *wins[0], _query(rng, "appear", color=color, shape=shape),
                 {"shape": shape, "color": color}, wins[1:])


@EVENTS.register("move")
def move(rng: np.random.Generator, n_frames: int, cfg: SynthConfig, occurrences: int = 1) -> Event:
    """One shape, always visible; in each frame of [a, b) (of each occurrence) it moves ``size/12`` to
    ``size/8`` pixels (turning back at the edges), and it is still before and after."""
    frames = _background(rng, n_frames, cfg)
    shape, color, r = _object(rng, cfg)
    wins = _windows(rng, n_frames, cfg, occurrences)
    lo, hi = r + 1, cfg.size - r - 1
    pos = np.array(_place(rng, r, cfg.size))
    angle = rng.uniform(0, 2 * np.pi)
    vel = rng.uniform(cfg.size / 12, cfg.size / 8) * np.array([np.cos(angle), np.sin(angle)])
    for k in range(n_frames):
        if any(a <= k < b for a, b in wins):
            for d in range(2):  # turn back before leaving the frame, so every step has the full speed
                if not lo <= pos[d] + vel[d] <= hi:
                    vel[d] = -vel[d]
            pos = pos + vel
        frames[k, _mask(shape, cfg.size, *pos, r)] = COLORS[color]
    return Event(frames.astype(np.uint8), *wins[0], _query(rng, "move", color=color, shape=shape),
                 {"shape": shape, "color": color}, wins[1:])


@EVENTS.register("recolor")
def recolor(rng: np.random.Generator, n_frames: int, cfg: SynthConfig, occurrences: int = 1) -> Event:
    """One shape, always visible in one colour, and in another colour in frames [a, b) (of each occurrence)."""
    frames = _background(rng, n_frames, cfg)
    shape, old, r = _object(rng, cfg)
    others = [c for c in COLORS if c != old]
    new = others[int(rng.integers(len(others)))]
    wins = _windows(rng, n_frames, cfg, occurrences)
    m = _mask(shape, cfg.size, *_place(rng, r, cfg.size), r)
    frames[:, m] = COLORS[old]
    for a, b in wins:
        frames[a:b, m] = COLORS[new]
    return Event(frames.astype(np.uint8), *wins[0], _query(rng, "recolor", color=new, old=old, shape=shape),
                 {"shape": shape, "color": new, "old_color": old}, wins[1:])


# ----------------------------------------------------------------------------------------------- writing


#: x264 settings. ``asm=0`` (plain C, no SIMD) is what makes the bytes reproducible: with SIMD on, a medium or
#: veryfast encode of the same frames differed in about 5% of the videos depending on what the process had
#: encoded before (measured on 200 videos x 3 orders; 0 differences with asm=0). Tiny frames keep it fast.
X264_OPTIONS = {"preset": "veryfast", "threads": "1", "x264-params": "asm=0:threads=1:lookahead-threads=1"}


def write_mp4(frames: np.ndarray, path: str | Path, fps: int, crf: int = 18) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames as H.264 mp4 (yuv420p, :data:`X264_OPTIONS`: same frames, same
    bytes); frame k has pts k in time base 1/fps. Written to a temporary file, then moved into place."""
    import av

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), **X264_OPTIONS})
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1
            stream.codec_context.time_base = Fraction(1, fps)
            for k, img in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts = k
                frame.time_base = Fraction(1, fps)
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jitter(rng: np.random.Generator, s: float, e: float, duration: float, cfg: SynthConfig) -> list[float]:
    """``[s, e]`` with each boundary moved by U(-j, j), clipped to [0, duration], at least one frame long."""
    for _ in range(100):
        js = min(max(s + rng.uniform(-cfg.label_jitter, cfg.label_jitter), 0.0), duration)
        je = min(max(e + rng.uniform(-cfg.label_jitter, cfg.label_jitter), 0.0), duration)
        if je - js >= 1.0 / cfg.fps:
            return [round(js, 2), round(je, 2)]
    return [s, e]  # practically unreachable: the clean window always qualifies


def make_video(index: int, cfg: SynthConfig) -> tuple[Event, float]:
    """Render video ``index`` (its own rng: independent of n and of the other videos); ``(event, duration)``.
    A planted video (see the module docstring) has its second occurrence in ``event.extra``."""
    rng = np.random.default_rng([cfg.seed, index])
    seconds = int(rng.integers(cfg.min_duration, cfg.max_duration + 1))
    kind = cfg.events[int(rng.integers(len(cfg.events)))]
    planted = np.random.default_rng([cfg.seed, index, 2]).random() < cfg.partial_share
    twice = planted and fits_twice(seconds * cfg.fps, cfg)
    event = EVENTS.get(kind)(rng, seconds * cfg.fps, cfg, 2 if twice else 1)
    event.info["event"] = kind
    return event, float(seconds)


def _record(index: int, split: str, cfg: SynthConfig, out: Path) -> dict[str, Any]:
    event, duration = make_video(index, cfg)
    vid = f"synth_{index:05d}"
    rel = f"videos/{vid}.mp4"
    write_mp4(event.frames, out / rel, cfg.fps, cfg.crf)
    occurrences = [[a / cfg.fps, b / cfg.fps] for a, b in [(event.a, event.b), *event.extra]]
    truth: dict[str, Any] = {"occurrences": len(occurrences), "planted_partial": False}
    clean = occurrences
    if split == "train" and len(occurrences) > 1:  # annotate one occurrence: a planted partial annotation
        pick = int(np.random.default_rng([cfg.seed, index, 3]).integers(len(occurrences)))
        clean = [occurrences[pick]]
        truth.update(planted_partial=True, other_window=occurrences[1 - pick])
    windows = clean
    if split == "train" and cfg.label_jitter > 0:
        windows = [_jitter(np.random.default_rng([cfg.seed, index, 1]), *clean[0], duration, cfg)]
    return {"qid": vid, "query": event.query, "duration": duration, "vid": vid, "relevant_windows": windows,
            "video": rel, "clean_windows": clean, **event.info, **truth}


def generate(cfg: SynthConfig, out_dir: str | Path) -> dict[str, Any]:
    """Write the benchmark to ``out_dir`` (see the module docstring); returns the summary also saved in
    ``synth_config.json``. Videos 0..n_train-1 are train, then val, then test."""
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    bounds = {"train": (0, cfg.n_train), "val": (cfg.n_train, cfg.n_train + cfg.n_val),
              "test": (cfg.n_train + cfg.n_val, cfg.n)}
    for split, (lo, hi) in bounds.items():
        lines = [json.dumps(_record(i, split, cfg, out)) for i in range(lo, hi)]
        tmp = out / f".{split}.jsonl.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, out / f"{split}.jsonl")
    summary = {"config": asdict(cfg), "splits": {s: hi - lo for s, (lo, hi) in bounds.items()}}
    (out / "synth_config.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def load_split(out_dir: str | Path, split: str = "train") -> list[Any]:
    """The samples of one split (moment_detr reader; video paths resolved against ``out_dir``)."""
    from timegrpo.data.formats import load_annotations

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    samples, _ = load_annotations(Path(out_dir) / f"{split}.jsonl", "moment_detr", video_dir=out_dir)
    return samples
