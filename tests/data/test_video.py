"""Frame sampling on the 4 real videos: timestamps against decord's, equality with qwen-vl-utils, the cache."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from timegrpo.data.schema import Sample
from timegrpo.data.video import (
    FrameCache,
    VideoError,
    VideoSampling,
    processor_video_inputs,
    sample_frames,
    sample_frames_for,
    sample_videos,
)

VIDEOS = {  # name: (frames, fps) as decord reports them (README: real videos)
    "OHOFG.mp4": (335, 9.53), "charades.mp4": (460, 14.99), "v_TpB_zMG3XBA.mp4": (491, 3.0),
    "v_rBMQFpHspmo.mp4": (434, 3.0),
}
SMALL = VideoSampling(fps=2.0, min_pixels=28 * 28, max_pixels=56 * 56, total_pixels=None)


@pytest.fixture(scope="module")
def videos(shared_data: Path) -> Path:
    return shared_data / "videos"


@pytest.fixture()
def decoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Counts calls of qwen-vl-utils' decord reader (the only thing that decodes)."""
    from qwen_vl_utils import vision_process as vp

    calls: list[dict] = []
    real = vp.VIDEO_READER_BACKENDS["decord"]

    def counting(ele: dict):
        calls.append(ele)
        return real(ele)

    monkeypatch.setitem(vp.VIDEO_READER_BACKENDS, "decord", counting)
    return calls


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_real_videos_decode_at_2fps_with_decoder_timestamps(videos: Path, name: str) -> None:
    import decord

    vf = sample_frames(videos / name, SMALL)
    vr = decord.VideoReader(str(videos / name))
    n, fps = len(vr), vr.get_avg_fps()
    assert (n, round(fps, 2)) == VIDEOS[name]
    nframes = 2 * math.floor(n / fps * 2.0 / 2)  # qwen-vl-utils: n/fps*2 frames, floored to even
    expected_idx = np.round(np.linspace(0, n - 1, nframes)).astype(int).tolist()
    assert vf.frame_indices == expected_idx
    assert vf.frames.shape[0] == nframes and vf.frames.dtype == torch.float32 and vf.frames.shape[1] == 3
    pts = vr.get_frame_timestamp(expected_idx)[:, 0]
    assert np.allclose(vf.timestamps, pts, atol=1e-4)  # the decoder's own frame times
    assert vf.max_pts_error < 1e-4
    assert vf.sample_fps == pytest.approx(nframes / n * fps) and abs(vf.sample_fps - 2.0) < 0.05
    assert vf.decoded_duration == pytest.approx(n / fps)
    assert vf.duration_source == "decoded" and vf.duration == vf.decoded_duration


def test_frames_equal_qwen_vl_utils_fetch_video(videos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from qwen_vl_utils import vision_process as vp

    monkeypatch.setattr(vp, "get_video_reader_backend", lambda: "decord")
    path = str(videos / "charades.mp4")
    for sampling, crop in [(VideoSampling(max_pixels=20000), (3.2, 20.5)),
                           (VideoSampling(fps=None, nframes=8, min_pixels=None, total_pixels=None), (None, None))]:
        vf = sample_frames(path, sampling, video_start=crop[0], video_end=crop[1])
        (ref, meta), fps = vp.fetch_video(sampling.element(path, *crop), return_video_sample_fps=True,
                                          return_video_metadata=True)
        assert torch.equal(vf.frames, ref)
        assert vf.sample_fps == fps and vf.frame_indices == meta["frames_indices"]
        assert vf.metadata["total_num_frames"] == meta["total_num_frames"]


def test_crop_gives_times_relative_to_the_clip(videos: Path) -> None:
    import decord

    vf = sample_frames(videos / "charades.mp4", SMALL, video_start=5.0, video_end=15.0, annotated_duration=10.0)
    fps = decord.VideoReader(str(videos / "charades.mp4")).get_avg_fps()
    assert vf.frame_indices[0] == math.ceil(5.0 * fps) and vf.frame_indices[-1] == math.floor(15.0 * fps)
    assert 0.0 <= vf.timestamps[0] < 1 / fps and 10.0 - 1 / fps < vf.timestamps[-1] <= 10.0
    assert vf.frames.shape[0] == 20  # 10 s at 2 fps
    assert vf.decoded_duration == pytest.approx(10.0, abs=1 / fps)
    assert vf.duration == 10.0 and vf.duration_source == "annotation" and not vf.mismatch


def test_annotated_vs_decoded_duration_is_reported(videos: Path, shared_data: Path, tmp_path: Path) -> None:
    anet = json.loads((shared_data / "activitynet_captions/train.json").read_text())
    annotated = anet["v_TpB_zMG3XBA"]["duration"]
    assert annotated == 163.05
    cache = FrameCache(tmp_path)
    vf = sample_frames(videos / "v_TpB_zMG3XBA.mp4", SMALL, annotated_duration=annotated, cache=cache)
    assert vf.decoded_duration == pytest.approx(491 / 3)
    assert vf.duration == 163.05 and vf.duration_source == "annotation"
    assert vf.duration_mismatch == pytest.approx(163.05 - 491 / 3) and vf.mismatch
    prefer_decoded = VideoSampling(**{**SMALL.__dict__, "prefer_duration": "decoded", "duration_tolerance": 1.0})
    decoded = sample_frames(videos / "v_TpB_zMG3XBA.mp4", prefer_decoded, annotated_duration=annotated,
                            cache=cache)
    assert decoded.from_cache  # the duration policy does not change the frames, so it is not in the cache key
    assert decoded.duration == decoded.decoded_duration and decoded.duration_source == "decoded"
    assert not decoded.mismatch


def test_cache_hit_decodes_nothing(videos: Path, tmp_path: Path, decoder_calls: list[dict]) -> None:
    cache = FrameCache(tmp_path / "cache")
    video = videos / "v_rBMQFpHspmo.mp4"
    first = sample_frames(video, SMALL, cache=cache)
    assert len(decoder_calls) == 1 and not first.from_cache and cache.writes == 1
    second = sample_frames(video, SMALL, cache=cache)
    assert len(decoder_calls) == 1 and second.from_cache and cache.hits == 1
    assert torch.equal(first.frames, second.frames) and first.timestamps == second.timestamps
    assert first.sample_fps == second.sample_fps and first.frame_indices == second.frame_indices
    # other settings or another crop are other entries
    sample_frames(video, VideoSampling(**{**SMALL.__dict__, "fps": 1.0}), cache=cache)
    sample_frames(video, SMALL, video_start=1.0, video_end=9.0, cache=cache)
    assert len(decoder_calls) == 3


def test_cache_key_follows_the_file(videos: Path, tmp_path: Path, decoder_calls: list[dict]) -> None:
    video = tmp_path / "v.mp4"
    shutil.copy(videos / "charades.mp4", video)
    cache = FrameCache(tmp_path / "cache")
    sample_frames(video, SMALL, cache=cache)
    sample_frames(video, SMALL, cache=cache)
    assert len(decoder_calls) == 1
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed: decode again
    sample_frames(video, SMALL, cache=cache)
    assert len(decoder_calls) == 2


def test_corrupt_entries_are_decoded_again(videos: Path, tmp_path: Path, decoder_calls: list[dict]) -> None:
    cache = FrameCache(tmp_path / "cache")
    ref = sample_frames(videos / "charades.mp4", SMALL, cache=cache)
    (entry,) = (tmp_path / "cache").rglob("*.npz")
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the frames: the zip CRC catches it
    entry.write_bytes(bytes(data))
    again = sample_frames(videos / "charades.mp4", SMALL, cache=cache)
    assert not again.from_cache and cache.corrupt == 1 and torch.equal(again.frames, ref.frames)
    entry.write_bytes(entry.read_bytes()[:500])  # a truncated entry
    assert not sample_frames(videos / "charades.mp4", SMALL, cache=cache).from_cache and cache.corrupt == 2
    assert sample_frames(videos / "charades.mp4", SMALL, cache=cache).from_cache
    assert len(decoder_calls) == 3


def test_a_failed_write_leaves_no_entry(videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = FrameCache(tmp_path / "cache")

    def killed(src: str, dst: str) -> None:
        raise KeyboardInterrupt  # the run dies between writing the temporary file and moving it into place

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        sample_frames(videos / "charades.mp4", SMALL, cache=cache)
    monkeypatch.undo()
    assert list((tmp_path / "cache").rglob("*")) == [p for p in (tmp_path / "cache").rglob("*") if p.is_dir()]
    assert not sample_frames(videos / "charades.mp4", SMALL, cache=cache).from_cache
    assert sample_frames(videos / "charades.mp4", SMALL, cache=cache).from_cache


def test_bad_videos_raise_with_the_path(tmp_path: Path) -> None:
    empty, garbage = tmp_path / "empty.mp4", tmp_path / "garbage.mp4"
    empty.write_bytes(b"")
    garbage.write_bytes(b"not a video" * 100)
    for path, kind in [(tmp_path / "missing.mp4", "missing_video"), (empty, "empty_video"),
                       (garbage, "unreadable_video")]:
        with pytest.raises(VideoError) as info:
            sample_frames(path, SMALL)
        assert info.value.kind == kind and str(path) in str(info.value)
    with pytest.raises(VideoError, match="video_dir"):
        sample_frames_for(Sample("q1", "v", None, 3.0, "q", [(0.0, 1.0)]))


def test_batch_helper_skips_and_counts(videos: Path, tmp_path: Path, decoder_calls: list[dict]) -> None:
    (tmp_path / "garbage.mp4").write_bytes(b"x" * 1000)
    video = str(videos / "v_rBMQFpHspmo.mp4")  # 434 frames at 3 fps: 144.67 s decoded
    samples = [Sample("a", "v", video, 144.5, "q", [(1.0, 2.0)]),
               Sample("b", "nope", str(tmp_path / "nope.mp4"), 10.0, "q", [(1.0, 2.0)]),
               Sample("c", "garbage", str(tmp_path / "garbage.mp4"), 10.0, "q", [(1.0, 2.0)]),
               Sample("d", "v", video, 143.0, "r", [(3.0, 4.0)])]
    with pytest.raises(VideoError, match="nope.mp4.*qid b.*on_bad='skip'"):
        sample_videos(samples, SMALL)
    out, rep = sample_videos(samples, SMALL, on_bad="skip")
    assert [s.qid for s, _ in out] == ["a", "d"]
    assert rep.skipped == {"missing_video": 1, "unreadable_video": 1} and rep.decoded == 1
    assert out[0][1].frames is out[1][1].frames  # one decode for both queries of the same video
    assert out[0][1].duration == 144.5 and out[1][1].duration == 143.0
    assert [vf.mismatch for _, vf in out] == [False, True] and rep.mismatches == 1  # tolerance 0.5 s


def test_processor_inputs_follow_process_vision_info(videos: Path) -> None:
    vf = sample_frames(videos / "charades.mp4", SMALL, video_end=4.0)
    vids, kwargs = processor_video_inputs([vf])
    assert vids[0] is vf.frames and kwargs == {"do_sample_frames": False, "fps": [vf.sample_fps]}
    _, kwargs = processor_video_inputs([vf], with_metadata=True)
    assert kwargs["video_metadata"][0]["frames_indices"] == vf.frame_indices and "fps" not in kwargs


def test_sampling_config_is_validated() -> None:
    with pytest.raises(ValueError, match="exactly one of fps and nframes"):
        VideoSampling(fps=2.0, nframes=8)
    with pytest.raises(ValueError, match="prefer_duration"):
        VideoSampling(prefer_duration="both")
    with pytest.raises(ValueError, match="max_pixels"):
        VideoSampling(min_pixels=1000, max_pixels=10)
