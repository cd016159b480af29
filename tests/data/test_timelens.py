"""TimeLens-Bench json and TimeLens-100K jsonl: detected, read into samples, bad records counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from timegrpo.data.anomalies import AnnotationError
from timegrpo.data.formats import detect_format, load_annotations

BENCH = {"vidA": {"duration": 30.0, "spans": [[2.0, 8.0], [10, 20]], "queries": ["A man  opens\nthe door.", "he sits"]},
         "vidB": {"duration": 12.5, "spans": [[0, 4.4]], "queries": ["dog barks"]}}
TRAIN = [{"video_path": "cosmo_cap/abc.mp4", "duration": 40, "source": "cosmo_cap",
          "events": [{"query": "x.", "span": [[1, 2], [5, 6]]}, {"query": "y", "span": [3, 5]}]},
         {"video_path": "didemo/zz.mp4", "duration": 9.5, "source": "didemo", "events": [{"query": "z", "span": [0, 9]}]},
         {"video_path": "cosmo_cap/abc.mp4", "duration": 40, "source": "cosmo_cap",
          "events": [{"query": "w", "span": [7, 8]}]}]


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(d) + "\n" for d in data) if name.endswith(".jsonl") else json.dumps(data))
    return p


def test_bench_is_detected_and_read(tmp_path):
    path = write(tmp_path, "charades-timelens.json", BENCH)
    assert detect_format(path) == "timelens_bench"
    samples, report = load_annotations(path)
    assert report.format == "timelens_bench" and report.n_dropped == 0
    assert [(s.qid, s.vid, s.duration, s.query, s.windows) for s in samples] == [
        ("vidA_0", "vidA", 30.0, "A man opens the door", [(2.0, 8.0)]),
        ("vidA_1", "vidA", 30.0, "he sits", [(10.0, 20.0)]),
        ("vidB_0", "vidB", 12.5, "dog barks", [(0.0, 4.4)])]
    assert samples[0].meta == {"query_raw": "A man  opens\nthe door."} and samples[1].meta == {}
    assert samples[0].video is None


def test_bench_videos_are_vid_mp4_in_the_video_dir(tmp_path):
    path = write(tmp_path, "b.json", BENCH)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "vidA.mp4").write_bytes(b"x")
    samples, report = load_annotations(path, video_dir=tmp_path / "videos", on_bad="skip")
    assert [s.video for s in samples] == [str(tmp_path / "videos" / "vidA.mp4")] * 2
    assert report.counts == {"missing_video": 1}


def test_bench_bad_entries_are_counted(tmp_path):
    bad = {**BENCH, "vidC": {"duration": 5, "spans": [[0, 1]], "queries": ["a", "b"]},
           "vidD": {"duration": 5, "spans": [[0, "x"]], "queries": ["a"]}}
    path = write(tmp_path, "b.json", bad)
    with pytest.raises(AnnotationError, match="vidC"):
        load_annotations(path)
    samples, report = load_annotations(path, on_bad="skip")
    assert len(samples) == 3 and report.counts == {"malformed": 2}


def test_100k_is_detected_and_read(tmp_path):
    path = write(tmp_path, "timelens-100k.jsonl", TRAIN)
    assert detect_format(path) == "timelens_100k"
    samples, _ = load_annotations(path)
    assert [(s.qid, s.query, s.windows, s.meta["source"]) for s in samples] == [
        ("abc_0", "x", [(1.0, 2.0), (5.0, 6.0)], "cosmo_cap"), ("abc_1", "y", [(3.0, 5.0)], "cosmo_cap"),
        ("zz_0", "z", [(0.0, 9.0)], "didemo"), ("abc_2", "w", [(7.0, 8.0)], "cosmo_cap")]
    # without a video folder, TimeLens's layout: videos/ beside the jsonl
    assert samples[0].video == str((tmp_path / "videos" / "cosmo_cap" / "abc.mp4").resolve())
    videos = tmp_path / "elsewhere"
    (videos / "didemo").mkdir(parents=True)
    (videos / "didemo" / "zz.mp4").write_bytes(b"x")
    samples, report = load_annotations(path, video_dir=videos, on_bad="skip")
    assert [s.qid for s in samples] == ["zz_0"] and samples[0].video == str(videos / "didemo" / "zz.mp4")
    assert report.counts == {"missing_video": 3}


def test_100k_bad_lines_and_events_are_counted(tmp_path):
    lines = [*TRAIN, {"video_path": "a/b.mp4", "duration": 3, "events": "nope"},
             {"video_path": "a/c.mp4", "duration": 3, "events": [{"query": "q"}, {"query": "r", "span": [0, 1]}]}]
    path = write(tmp_path, "t.jsonl", lines)
    path.write_text(path.read_text() + "{not json\n")
    samples, report = load_annotations(path, on_bad="skip")
    assert report.counts == {"malformed": 3}
    assert [s.qid for s in samples][-1] == "c_1"  # the bad event keeps its number: qids do not shift
