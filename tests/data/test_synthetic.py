"""The synthetic benchmark: deterministic, frame-exact windows that survive H.264 and qwen-vl-utils decoding."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from timegrpo.cli import main
from timegrpo.data.formats import load_annotations
from timegrpo.data.synthetic import COLORS, QUERIES, SynthConfig, generate, load_split, recommended_sampling
from timegrpo.data.video import sample_frames_for

ALL_EVENTS = ("appear", "move", "recolor")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(n=30, seed=1, events=ALL_EVENTS, label_jitter=1.0), out)
    return out


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_videos(tmp_path: Path) -> None:
    cfg = SynthConfig(n=6, seed=3, events=ALL_EVENTS, label_jitter=0.5)
    generate(cfg, tmp_path / "a")
    generate(cfg, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b and len([k for k in a if k.endswith(".mp4")]) == 6
    generate(SynthConfig(n=6, seed=4, events=ALL_EVENTS), tmp_path / "c")
    c = _files(tmp_path / "c")
    assert all(a[k] != c[k] for k in a if k.endswith(".mp4"))
    # a video depends on (seed, index) only: not on n, the splits or the label jitter
    generate(SynthConfig(n=4, seed=3, events=ALL_EVENTS), tmp_path / "d")
    d = _files(tmp_path / "d")
    assert all(d[f"videos/synth_{i:05d}.mp4"] == a[f"videos/synth_{i:05d}.mp4"] for i in range(4))


def test_splits_and_records(mixed: Path) -> None:
    sizes = {s: len((mixed / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "val", "test")}
    assert sizes == {"train": 24, "val": 3, "test": 3}
    samples, rep = load_annotations(mixed / "train.jsonl", video_dir=mixed)
    assert rep.format == "moment_detr" and rep.counts == {} and len(samples) == 24
    for s in samples:
        assert Path(s.video).is_file() and s.video == str(mixed / "videos" / f"{s.vid}.mp4")
        assert s.duration == int(s.duration) and 8 <= s.duration <= 20
        assert s.meta["event"] in ALL_EVENTS and s.meta["color"] in s.query
    assert json.loads((mixed / "synth_config.json").read_text())["splits"] == sizes
    with pytest.raises(ValueError, match="exceeds n"):
        SynthConfig(n=10, val_size=6, test_size=5)
    with pytest.raises(ValueError, match="unknown events"):
        SynthConfig(events=("explode",))


def test_label_jitter_only_on_train(mixed: Path) -> None:
    train = load_split(mixed, "train")
    moved = 0
    for s in train:
        (cs, ce), (js, je) = s.meta["clean_windows"][0], s.windows[0]
        assert abs(js - cs) <= 1.0 + 0.005 and abs(je - ce) <= 1.0 + 0.005
        assert js >= 0 and je <= s.duration and je - js >= 0.5
        moved += (js, je) != (cs, ce)
    assert moved >= 20  # U(-1, 1) per boundary: practically every window moves
    for split in ("val", "test"):
        assert all(s.windows == [tuple(w) for w in s.meta["clean_windows"]] for s in load_split(mixed, split))


def test_planted_partial_annotations(tmp_path: Path) -> None:
    """Every video planted (share 1): train annotates one occurrence and names the other in meta, val/test
    annotate both; each occurrence >= 2.5 s, >= 3 s apart; the shape shows in both (decoded), nowhere else."""
    cfg = SynthConfig(n=12, seed=5, val_size=2, test_size=2, partial_share=1.0, label_jitter=1.5)
    generate(cfg, tmp_path)
    for split in ("train", "val", "test"):
        for s in load_split(tmp_path, split):
            assert s.meta["occurrences"] == 2  # 8-20 s videos always fit 2.5 + 3 + 2.5 s
            both = s.meta["clean_windows"] + ([s.meta["other_window"]] if split == "train" else [])
            assert s.meta["planted_partial"] is (split == "train") and len(both) == 2
            (a1, b1), (a2, b2) = sorted(both)
            assert b1 - a1 >= 2.5 and b2 - a2 >= 2.5 and a2 - b1 >= 3.0 and a1 >= 0 and b2 <= s.duration
            if split != "train":
                assert s.windows == [tuple(w) for w in sorted(both)]
                continue
            assert len(s.windows) == 1 and "other_window" in s.meta
            (js, je), (cs, ce) = s.windows[0], s.meta["clean_windows"][0]
            assert abs(js - cs) <= 1.5 + 0.005 and abs(je - ce) <= 1.5 + 0.005  # the annotated one, jittered
            vf = sample_frames_for(s, recommended_sampling())
            area = _color_mask(vf.frames.numpy(), s.meta["color"]).sum(axis=(1, 2))
            inside = np.array([any(a <= t < b for a, b in both) for t in vf.timestamps])
            assert area[inside].min() >= 40 and area[~inside].max() <= 3, (s.qid, area)


def test_partial_share_draw_is_per_video() -> None:
    """A video is planted when ``default_rng([seed, index, 2]).random() < share``: the same videos at any n."""
    from timegrpo.data.synthetic import make_video

    cfg = SynthConfig(n=100, seed=0, partial_share=0.2)
    twice = [i for i in range(100) if make_video(i, cfg)[0].extra]
    drawn = [i for i in range(100) if np.random.default_rng([0, i, 2]).random() < 0.2]
    assert twice == drawn and 10 <= len(twice) <= 30
    assert not any(make_video(i, SynthConfig(n=100, seed=0, partial_share=0.0))[0].extra for i in drawn)
    with pytest.raises(ValueError, match="partial_share"):
        SynthConfig(partial_share=1.5)


def test_several_event_types_and_phrasings() -> None:
    from timegrpo.data.synthetic import make_video

    cfg = SynthConfig(n=90, events=ALL_EVENTS)
    events = [make_video(i, cfg)[0] for i in range(90)]
    kinds = Counter(e.info["event"] for e in events)
    assert set(kinds) == set(ALL_EVENTS) and min(kinds.values()) >= 15
    for kind in ALL_EVENTS:
        templates = {t for e in events if e.info["event"] == kind for t in QUERIES[kind]
                     if t.format(**{"old": e.info.get("old_color", ""), **e.info}) == e.query}
        assert len(templates) >= 3, kind


def _color_mask(frames: np.ndarray, color: str) -> np.ndarray:
    """``(T, H, W)`` pixels within 60 of the colour on every channel; frames ``(T, C, H, W)``."""
    rgb = np.array(COLORS[color], dtype=np.float32)[None, :, None, None]
    return np.abs(frames - rgb).max(axis=1) < 60


def test_decoded_frames_show_the_event_exactly_in_the_window(mixed: Path) -> None:
    """Through H.264, decord and qwen-vl-utils at 2 fps: frame k at k/2 s, and the event in [s, e) only."""
    samples = load_split(mixed, "train") + load_split(mixed, "val") + load_split(mixed, "test")
    seen = set()
    for s in samples:
        vf = sample_frames_for(s, recommended_sampling())
        n = int(s.duration * 2)
        assert vf.frames.shape == (n, 3, 56, 56) and vf.sample_fps == 2.0 and vf.video_fps == 2.0
        assert vf.timestamps == [k / 2 for k in range(n)] and vf.decoded_duration == s.duration
        occurrences = s.meta["clean_windows"] + ([s.meta["other_window"]] if s.meta["planted_partial"] else [])
        assert len(occurrences) == s.meta["occurrences"]
        inside = np.array([any(a <= t < b for a, b in occurrences) for t in vf.timestamps])
        frames = vf.frames.numpy()
        area = _color_mask(frames, s.meta["color"]).sum(axis=(1, 2))
        if s.meta["event"] == "appear":  # the shape is there in the window, and nowhere else
            assert area[inside].min() >= 40 and area[~inside].max() <= 3, (s.qid, area)
        elif s.meta["event"] == "recolor":  # new colour in the window, old colour outside
            old = _color_mask(frames, s.meta["old_color"]).sum(axis=(1, 2))
            assert area[inside].min() >= 40 and area[~inside].max() <= 3, (s.qid, area)
            assert old[~inside].min() >= 40 if (~inside).any() else True
        else:  # move: the shape's centre changes between frames k-1 and k exactly for frames k in the window
            ys, xs = np.mgrid[0:56, 0:56]
            m = _color_mask(frames, s.meta["color"])
            centre = np.stack([(m * xs).sum((1, 2)) / m.sum((1, 2)), (m * ys).sum((1, 2)) / m.sum((1, 2))], 1)
            step = np.r_[0.0, np.linalg.norm(np.diff(centre, axis=0), axis=1)]
            assert step[inside & (np.arange(n) > 0)].min() > 2.0 and step[~inside].max() < 0.5, (s.qid, step)
        seen.add(s.meta["event"])
    assert seen == set(ALL_EVENTS)


def test_about_55_visual_tokens_per_video_with_the_qwen_processor(tmp_path: Path) -> None:
    from transformers import Qwen2VLVideoProcessor

    from timegrpo.data.video import processor_video_inputs

    generate(SynthConfig(n=20, seed=0, val_size=0, test_size=0), tmp_path)
    vfs = [sample_frames_for(s, recommended_sampling()) for s in load_split(tmp_path, "train")]
    videos, kwargs = processor_video_inputs(vfs)
    # the Qwen2.5-VL checkpoints' video processor: min_pixels 3136 (56x56), so these frames are not resized
    proc = Qwen2VLVideoProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 768})
    grid = proc(videos=videos, do_sample_frames=False, return_tensors="pt")["video_grid_thw"]
    tokens = grid.prod(-1) // 4  # 2x2 spatial merge
    assert grid[:, 1:].eq(4).all() and kwargs["fps"] == [2.0] * 20
    assert (tokens == 4 * grid[:, 0]).all() and 40 <= tokens.float().mean() <= 70


def test_synth_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "--out", str(tmp_path), "--n", "10", "--seed", "0", "--events",
                 "appear,move", "--label-jitter", "0.5", "--val-size", "2", "--test-size", "3"]) == 0
    assert "wrote 10 videos (train 5, val 2, test 3)" in capsys.readouterr().out
    splits = {name: load_split(tmp_path, name) for name in ("train", "val", "test")}
    assert {name: len(s) for name, s in splits.items()} == {"train": 5, "val": 2, "test": 3}
    referenced = sorted(Path(s.video).name for samples in splits.values() for s in samples)
    assert referenced == [f"synth_{i:05d}.mp4" for i in range(10)]  # one video per sample, none shared
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == referenced  # and no stray file


@pytest.mark.slow
def test_200_videos_in_under_a_minute(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    assert main(["data", "synth", "--out", str(tmp_path), "--n", "200", "--seed", "0"]) == 0
    assert time.perf_counter() - t0 < 60
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [f"synth_{i:05d}.mp4" for i in range(200)]
