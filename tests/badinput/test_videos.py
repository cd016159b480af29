"""Broken videos are VideoErrors naming the path; durations that cannot be right are anomalies."""

from __future__ import annotations

from pathlib import Path

import pytest

from timegrpo.data.anomalies import AnnotationError, AnomalyReport, RawRecord, validate
from timegrpo.data.schema import Sample
from timegrpo.data.video import VideoError, VideoSampling, sample_frames, sample_frames_for
from timegrpo.errors import UserError

SAMPLING = VideoSampling(fps=2.0, min_pixels=3136, max_pixels=3136, total_pixels=None)


@pytest.fixture(scope="module")
def good_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """One synthetic mp4 and its duration."""
    from timegrpo.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(SynthConfig(n=1, val_size=0, test_size=0, seed=5, min_duration=12, max_duration=12), out)
    return next((out / "videos").glob("*.mp4")), 12.0


@pytest.mark.parametrize("kind,expected", [("zero", "empty_video"), ("truncated", "unreadable_video"),
                                           ("random", "unreadable_video"), ("corrupt", "unreadable_video")])
def test_every_broken_video_is_a_video_error_naming_the_path(good_video, broken_videos, tmp_path, kind, expected):
    path = broken_videos(good_video[0], tmp_path)[kind]
    with pytest.raises(VideoError) as info:
        sample_frames(path, SAMPLING)
    assert info.value.kind == expected and str(path.resolve()) in str(info.value)
    assert isinstance(info.value, UserError)


def test_the_corrupt_frame_video_is_caught_although_decord_error_is_no_runtime_error(good_video, broken_videos,
                                                                                    tmp_path):
    import decord

    path = broken_videos(good_video[0], tmp_path)["corrupt"]
    assert b"moov" in path.read_bytes()  # the index is intact; the frames are not
    assert not issubclass(decord._ffi.base.DECORDError, RuntimeError)
    with pytest.raises(VideoError, match=r"decord could not sample it \(DECORDError"):
        sample_frames(path, SAMPLING)


def _sample(video: Path, duration: float) -> Sample:
    return Sample("q7", "v", str(video), duration, "the event", [(1.0, 2.0)])


def test_a_video_much_shorter_than_annotated_is_a_duration_mismatch(good_video):
    video, seconds = good_video
    with pytest.raises(VideoError) as info:
        sample_frames_for(_sample(video, 120.0), SAMPLING)
    assert info.value.kind == "duration_mismatch"
    assert "decoded 12.0 s but annotated 120 s (qid q7)" in str(info.value)
    # within 10% of the annotated duration it is accepted (ActivityNet's 163.05 vs 163.67 s), and 0 turns it off
    assert sample_frames_for(_sample(video, seconds * 1.09), SAMPLING).duration == pytest.approx(seconds * 1.09)
    off = VideoSampling(**{**SAMPLING.__dict__, "max_duration_mismatch": 0.0})
    assert sample_frames_for(_sample(video, 120.0), off).duration == 120.0


def test_an_absurd_duration_is_a_bad_record():
    rec = RawRecord("line 3", Sample("q1", "v", None, 1e9, "q", [(1.0, 2.0)]))
    report = AnomalyReport("moment_detr", "a.jsonl")
    with pytest.raises(AnnotationError, match=r"1 bad record\(s\) of 1 .*absurd_duration 1"):
        validate([rec], report)
    kept = validate([rec], AnomalyReport("moment_detr", "a.jsonl"), on_bad="skip")
    assert kept == []


@pytest.mark.parametrize("meta,bad", [({"relevant_clip_ids": [0, 4]}, False), ({"relevant_clip_ids": [5]}, True),
                                      ({"relevant_clip_ids": [-1]}, True), ({"relevant_clip_ids": [1.5]}, True),
                                      ({"relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3]]}, True)])
def test_clip_ids_past_the_duration_are_bad_records(meta, bad):
    # 10 s of 2 s clips: ids 0..4
    rec = RawRecord("line 1", Sample("q1", "v", None, 10.0, "q", [(1.0, 2.0)], meta=meta))
    report = AnomalyReport("moment_detr", "a.jsonl")
    kept = validate([rec], report, on_bad="skip")
    assert (kept == []) == bad and report.counts.get("bad_clip_ids", 0) == int(bad)
    if bad:
        assert report.dropped_records == [{"qid": "q1", "where": "line 1", "kind": "bad_clip_ids",
                                           "detail": report.dropped_records[0]["detail"]}]
