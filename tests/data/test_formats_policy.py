"""The on_bad policy, record by record, on small files written here (numbers worked out by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from timegrpo.data.anomalies import AnnotationError
from timegrpo.data.formats import READERS, detect_format, load_annotations

LINES = [
    {"qid": 1, "query": "good", "duration": 10, "vid": "a", "relevant_windows": [[1, 2]]},
    {"qid": 2, "query": "negative start", "duration": 10, "vid": "a", "relevant_windows": [[-0.5, 3]]},
    {"qid": 3, "query": "past the end", "duration": 10, "vid": "a", "relevant_windows": [[8, 12.5]]},
    {"qid": 4, "query": "start after end", "duration": 10, "vid": "a", "relevant_windows": [[5, 4]]},
    {"qid": 5, "query": "zero", "duration": 10, "vid": "a", "relevant_windows": [[4, 4]]},
    {"qid": 6, "query": "   ", "duration": 10, "vid": "a", "relevant_windows": [[1, 2]]},
    {"qid": 7, "query": "  padded ", "duration": 10, "vid": "b", "relevant_windows": [[1, 2]]},
    {"qid": 1, "query": "same qid", "duration": 10, "vid": "b", "relevant_windows": [[1, 2]]},
    "this line is not json",
    {"qid": 9, "query": "no duration", "vid": "c", "relevant_windows": [[1, 2]]},
    {"qid": 10, "query": "good", "duration": 10, "vid": "a", "relevant_windows": [[1, 2]]},
    {"qid": 11, "query": "starts after the end", "duration": 10, "vid": "b", "relevant_windows": [[10, 11]]},
    {"qid": 12, "query": "two windows", "duration": 10, "vid": "b", "relevant_windows": [[0, 1], [9, 10.000000001]]},
    {"qid": 13, "query": "GOOD", "duration": 10, "vid": "a", "relevant_windows": [[3, 4]]},
]


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    p = tmp_path / "messy.jsonl"
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in LINES))
    return p


EXPECTED_COUNTS = {
    "negative_start": 1, "window_past_duration": 2, "window_past_duration_over_1s": 1, "start_after_end": 1,
    "zero_length": 1, "empty_query": 1, "whitespace_query": 2, "duplicate_qid": 1, "malformed": 1,
    "missing_duration": 1, "duplicate": 1, "repeated_query": 2, "start_past_duration": 1,
}


def test_counts_are_the_same_under_every_policy(messy: Path) -> None:
    for policy in ("skip", "clip"):
        _, rep = load_annotations(messy, on_bad=policy)
        assert rep.counts == EXPECTED_COUNTS and rep.records == 14
    with pytest.raises(AnnotationError) as info:
        load_annotations(messy)
    assert info.value.report.counts == EXPECTED_COUNTS


def test_skip_drops_every_bad_record_and_counts_why(messy: Path) -> None:
    samples, rep = load_annotations(messy, on_bad="skip")
    assert [s.qid for s in samples] == ["1", "7", "10", "12", "13"]
    assert rep.dropped == {"negative_start": 1, "window_past_duration": 1, "start_after_end": 1, "zero_length": 1,
                           "empty_query": 1, "duplicate_qid": 1, "malformed": 1, "missing_duration": 1,
                           "start_past_duration": 1}
    assert rep.kept + rep.n_dropped == rep.records == 14
    padded = next(s for s in samples if s.qid == "7")
    assert padded.query == "padded"


def test_clip_clamps_what_it_can_and_drops_the_rest(messy: Path) -> None:
    samples, rep = load_annotations(messy, on_bad="clip")
    by_qid = {s.qid: s for s in samples}
    assert sorted(by_qid, key=int) == ["1", "2", "3", "7", "10", "12", "13"]
    assert by_qid["2"].windows == [(0.0, 3.0)]
    assert by_qid["3"].windows == [(8.0, 10.0)]
    # qid 12's second window ends 1e-9 s past the duration: float noise within TIME_EPS, not touched
    assert by_qid["12"].windows == [(0.0, 1.0), (9.0, 10.000000001)]
    assert rep.clipped == {"negative_start": 1, "window_past_duration": 1}
    assert rep.dropped == {"start_after_end": 1, "zero_length": 1, "empty_query": 1, "duplicate_qid": 1,
                           "malformed": 1, "missing_duration": 1, "start_past_duration": 1}


def test_error_message_names_file_lines_qids_and_the_fix(messy: Path) -> None:
    with pytest.raises(AnnotationError) as info:
        load_annotations(messy)
    msg = str(info.value)
    assert str(messy) in msg
    assert "line 4 (qid 4): window [5, 4] has start > end" in msg
    assert "line 9: " in msg and "malformed" in msg
    assert "line 8 (qid 1): qid '1' appeared before" in msg
    assert "on_bad='skip'" in msg and "--on-bad clip" in msg


def test_clip_only_problems_still_error_by_default(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps(LINES[2]) + "\n")
    with pytest.raises(AnnotationError, match="window_past_duration 1"):
        load_annotations(p)
    samples, _ = load_annotations(p, on_bad="clip")
    assert samples[0].windows == [(8.0, 10.0)]


def test_charades_without_durations_and_with_a_json(tmp_path: Path) -> None:
    txt = tmp_path / "sta.txt"
    txt.write_text("AAA 1.0 5.5##a person opens a door.\nAAA 2 3##x\nBBB 0 4##someone sits\nbroken line\n")
    with pytest.raises(AnnotationError, match="missing_duration 3"):
        load_annotations(txt)
    _, rep = load_annotations(txt, on_bad="skip")
    assert rep.dropped == {"missing_duration": 3, "malformed": 1}
    assert any("no Charades_v1_*.csv" in n for n in rep.notes)
    (tmp_path / "d.json").write_text(json.dumps({"AAA": {"duration": 5.0}, "BBB": 30}))
    samples, rep = load_annotations(txt, on_bad="clip", durations=tmp_path / "d.json")
    assert [(s.qid, s.windows, s.duration) for s in samples] == [
        ("AAA_0", [(1.0, 5.0)], 5.0), ("AAA_1", [(2.0, 3.0)], 5.0), ("BBB_0", [(0.0, 4.0)], 30.0)]
    assert rep.dropped == {"malformed": 1} and rep.clipped == {"window_past_duration": 1}


def test_dict_json_with_mismatched_lists_is_malformed(tmp_path: Path) -> None:
    p = tmp_path / "anet.json"
    p.write_text(json.dumps({"v1": {"duration": 9, "timestamps": [[0, 1], [2, 3]], "sentences": ["one"]},
                             "v2": {"duration": 9, "timestamps": [[0, 1]], "sentences": ["ok"]}}))
    samples, rep = load_annotations(p, on_bad="skip")
    assert rep.format == "activitynet" and [s.qid for s in samples] == ["v2_0"]
    assert rep.counts == {"malformed": 1}


def test_detect_format_on_small_files(tmp_path: Path) -> None:
    cases = {
        "a.txt": "X 1 2##q\n",
        "b.jsonl": json.dumps({"qid": 1, "query": "q", "vid": "v", "duration": 3, "relevant_windows": [[0, 1]]}),
        "c.jsonl": json.dumps({"qid": "x", "query": "q", "vid": "v", "duration": 3, "relevant_windows": [[0, 1]],
                               "ans": "A"}),
        "d.json": json.dumps([{"video": "v.mp4", "duration": 3, "timestamp": [0, 1], "sentence": "q", "qid": "x"}]),
        "e.json": json.dumps([{"path": "v.mp4", "question": "q", "answer": "0-1", "duration": 3}]),
        "f.json": json.dumps({"v": {"duration": 3, "timestamps": [[0, 1]], "sentences": ["q"]}}),
        "g.json": json.dumps({"v.avi": {"fps": 2, "num_frames": 6, "timestamps": [[0, 1]], "sentences": ["q"]}}),
        "i.json": json.dumps({"v": {"duration": 3, "spans": [[0, 1]], "queries": ["q"]}}),
        "j.jsonl": json.dumps({"video_path": "s/v.mp4", "duration": 3, "events": [{"query": "q", "span": [[0, 1]]}]}),
    }
    expected = ["charades_sta", "moment_detr", "rextime", "time_r1", "tvgbench", "activitynet", "tacos_2dtan",
                "timelens_bench", "timelens_100k"]
    for (name, text), fmt in zip(cases.items(), expected):
        (tmp_path / name).write_text(text)
        assert detect_format(tmp_path / name) == fmt, name
    assert set(expected) | {"nextgqa"} == set(READERS.names())
    (tmp_path / "h.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot tell the annotation format"):
        detect_format(tmp_path / "h.json")
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "nope.json")
    with pytest.raises(KeyError, match="unknown annotation format 'foo'; known: activitynet"):
        load_annotations(tmp_path / "a.txt", "foo")


def test_moment_detr_video_paths(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v1.mp4").write_bytes(b"\0")
    p = tmp_path / "s.jsonl"
    rows = [{"qid": 1, "query": "q", "vid": "v1", "duration": 3, "relevant_windows": [[0, 1]], "video": "videos/v1.mp4"},
            {"qid": 2, "query": "q", "vid": "v2", "duration": 3, "relevant_windows": [[0, 1]]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples, rep = load_annotations(p)  # relative `video` resolves against the jsonl's folder
    assert samples[0].video == str(tmp_path / "videos" / "v1.mp4") and samples[1].video is None
    samples, rep = load_annotations(p, video_dir=tmp_path / "videos", on_bad="skip")
    assert [s.qid for s in samples] == ["1"] and rep.dropped == {"missing_video": 1}
    assert samples[0].video == str(tmp_path / "videos" / "v1.mp4")


def test_an_absolute_video_path_that_exists_is_found_with_another_video_dir(tmp_path: Path) -> None:
    """Curriculum selections carry absolute paths; a recipe's video_dir (where the base names are not) keeps working."""
    (tmp_path / "deep" / "videos").mkdir(parents=True)
    video = tmp_path / "deep" / "videos" / "v1.mp4"
    video.write_bytes(b"\0")
    p = tmp_path / "sel.jsonl"
    row = {"qid": 1, "query": "q", "vid": "v1", "duration": 3, "relevant_windows": [[0, 1]], "video": str(video)}
    p.write_text(json.dumps(row) + "\n")
    samples, rep = load_annotations(p, video_dir=tmp_path / "deep")
    assert samples[0].video == str(video) and not rep.dropped
    video.unlink()  # gone: the video_dir candidate is named, and counted missing
    with pytest.raises(AnnotationError, match="missing_video"):
        load_annotations(p, video_dir=tmp_path / "deep")
