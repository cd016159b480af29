"""Every real annotation file in ../shared/data loads under --on-bad skip and clip with the README's counts.

The anomaly counts below are those of ../shared/data/README.md (where it states them), and the rest were
recounted from the raw files with plain json/csv code: the README's "end > duration" is our
``window_past_duration`` (ends past the duration by more than 1e-6 s of float noise), "end > duration + 1 s"
is ``window_past_duration_over_1s``, "exact duplicate records ... extra copies" is ``duplicate``, "same vid +
query (case-insensitive) repeated" is ``repeated_query``, "leading/trailing whitespace" is ``whitespace_query``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from timegrpo.data.anomalies import AnnotationError
from timegrpo.data.formats import detect_format, load_annotations, load_durations

# file: (format, records, anomaly counts, kept under skip, kept under clip, clipped windows under clip)
REAL = {
    "charades_sta/charades_sta_train.txt": (
        "charades_sta", 12408,
        {"start_after_end": 4, "window_past_duration": 1805, "window_past_duration_over_1s": 734,
         "start_past_duration": 3}, 12408 - 4 - 1802, 12404, 1802),
    "charades_sta/charades_sta_test.txt": (
        "charades_sta", 3720, {"window_past_duration": 562, "window_past_duration_over_1s": 228}, 3158, 3720, 562),
    "charades_sta/vslnet/charades_sta_train.txt": (
        "charades_sta", 12408, {"window_past_duration": 1802, "window_past_duration_over_1s": 734},
        12408 - 1802, 12408, 1802),
    "charades_sta/charades_train_release.jsonl": ("moment_detr", 12404, {}, 12404, 12404, 0),
    "charades_sta/charades_test_release.jsonl": ("moment_detr", 3720, {}, 3720, 3720, 0),
    "charades_sta/time-r1/train.json": (
        "activitynet", 12408,
        {"start_after_end": 4, "window_past_duration": 1789, "window_past_duration_over_1s": 671,
         "start_past_duration": 3}, 12408 - 4 - 1786, 12404, 1786),
    "charades_sta/time-r1/val.json": (
        "activitynet", 3720, {"window_past_duration": 562, "window_past_duration_over_1s": 228}, 3158, 3720, 562),
    "activitynet_captions/train.json": (
        "activitynet", 37421,
        {"start_after_end": 2, "zero_length": 2, "window_past_duration": 29, "whitespace_query": 25731,
         "repeated_query": 5}, 37421 - 33, 37421 - 4, 29),
    "activitynet_captions/val_1.json": (
        "activitynet", 17505, {"window_past_duration": 5, "whitespace_query": 11639, "repeated_query": 3},
        17500, 17505, 5),
    "activitynet_captions/val_2.json": (
        "activitynet", 17031, {"window_past_duration": 1, "whitespace_query": 11483}, 17030, 17031, 1),
    "activitynet_captions/activitynet_val_release.jsonl": (
        "moment_detr", 17505, {"window_past_duration": 5, "whitespace_query": 11639, "repeated_query": 3},
        17500, 17505, 5),
    "qvhighlights/highlight_train_release.jsonl": ("moment_detr", 7218, {}, 7218, 7218, 0),
    "qvhighlights/highlight_val_release.jsonl": ("moment_detr", 1550, {}, 1550, 1550, 0),
    "qvhighlights/highlight_test_release.jsonl": ("moment_detr", 1542, {"no_windows": 1542}, 1542, 1542, 0),
    "qvhighlights/highlight_test_with_gt.jsonl": ("moment_detr", 1542, {}, 1542, 1542, 0),
    "tacos/tacos_train_release.jsonl": (
        "moment_detr", 9790, {"duplicate": 1201, "repeated_query": 1710, "whitespace_query": 21}, 9790, 9790, 0),
    "tacos/tacos_val_release.jsonl": (
        "moment_detr", 4436, {"duplicate": 516, "repeated_query": 796, "whitespace_query": 12}, 4436, 4436, 0),
    "tacos/tacos_test_release.jsonl": (
        "moment_detr", 4001, {"duplicate": 567, "repeated_query": 839, "whitespace_query": 20}, 4001, 4001, 0),
    "tacos/2d-tan/train.json": (
        "tacos_2dtan", 9790,
        {"duplicate": 1201, "repeated_query": 1710, "whitespace_query": 21, "window_past_duration": 43},
        9790 - 43, 9790, 43),
    "tacos/2d-tan/val.json": (
        "tacos_2dtan", 4436, {"duplicate": 516, "repeated_query": 796, "whitespace_query": 12}, 4436, 4436, 0),
    "tacos/2d-tan/test.json": (
        "tacos_2dtan", 4001,
        {"duplicate": 567, "repeated_query": 839, "whitespace_query": 20, "window_past_duration": 5},
        4001 - 5, 4001, 5),
    "time_r1/train_2k5.json": (
        "time_r1", 2500, {"window_past_duration": 34, "window_past_duration_over_1s": 29}, 2466, 2500, 34),
    "time_r1/tvgbench.json": (
        "tvgbench", 800,
        {"zero_length": 11, "window_past_duration": 27, "window_past_duration_over_1s": 10,
         "whitespace_query": 135, "repeated_query": 1}, 800 - 11 - 27, 800 - 11, 27),
    "nextgqa/gsub_test.json": (
        "nextgqa", 5553, {"negative_start": 36, "whitespace_query": 1, "repeated_query": 2}, 5553 - 36, 5553, 36),
    "nextgqa/gsub_val.json": (
        "nextgqa", 3358, {"window_past_duration": 3, "repeated_query": 2}, 3355, 3358, 3),
    "rextime/rextime_val.jsonl": (
        "rextime", 921, {"window_past_duration": 4, "zero_length": 2}, 915, 919, 4),
}


def _flat(windows: list[tuple[float, float]]) -> list[float]:
    return [x for w in windows for x in w]


@pytest.mark.parametrize("rel", sorted(REAL))
def test_real_file_counts_under_skip_and_clip(shared_data: Path, rel: str) -> None:
    fmt, records, counts, kept_skip, kept_clip, clipped = REAL[rel]
    path = shared_data / rel
    assert detect_format(path) == fmt
    skip, rep_s = load_annotations(path, on_bad="skip")
    clip, rep_c = load_annotations(path, on_bad="clip")
    for rep in (rep_s, rep_c):
        assert rep.format == fmt and rep.records == records
        assert rep.counts == counts  # every kind, exactly: no unexpected anomaly either
    assert len(skip) == rep_s.kept == kept_skip
    assert rep_s.n_dropped == records - kept_skip
    assert len(clip) == rep_c.kept == kept_clip
    assert rep_c.n_dropped == records - kept_clip
    assert sum(rep_c.clipped.values()) == clipped and not rep_s.clipped
    for s in skip + clip:  # whatever survives is valid and stripped
        assert s.query == s.query.strip() and s.query
        assert s.duration is not None and s.duration > 0
        assert all(0 <= a < b <= s.duration + 1e-6 for a, b in s.windows), (s.qid, s.windows, s.duration)
    assert len({s.qid for s in clip}) == len(clip)


def test_default_policy_is_error_and_names_line_qid_and_fix(shared_data: Path) -> None:
    with pytest.raises(AnnotationError) as info:
        load_annotations(shared_data / "charades_sta/charades_sta_train.txt")
    msg = str(info.value)
    assert "charades_sta_train.txt" in msg and "start_after_end 4" in msg and "window_past_duration 1805" in msg
    assert "line 8252 (qid LEOL6_0): window [8, 7] has start > end" in msg
    assert "--on-bad skip" in msg and "--on-bad clip" in msg
    assert info.value.report is not None and info.value.report.counts["start_after_end"] == 4


def test_clean_files_load_under_the_default_policy(shared_data: Path) -> None:
    samples, rep = load_annotations(shared_data / "qvhighlights/highlight_val_release.jsonl")
    assert len(samples) == 1550 and rep.counts == {}
    assert len({s.vid for s in samples}) == 1519
    assert sum(len(s.windows) for s in samples) == 2803
    assert sum(len(s.windows) > 1 for s in samples) == 530
    s = samples[0]
    assert len(s.meta["saliency_scores"]) == len(s.meta["relevant_clip_ids"]) > 0
    # TACoS duplicates are benign: the official benchmark keeps them, and so does the default policy
    tacos, rep = load_annotations(shared_data / "tacos/tacos_test_release.jsonl")
    assert len(tacos) == 4001 and rep.counts["duplicate"] == 567
    dedup, rep = load_annotations(shared_data / "tacos/tacos_test_release.jsonl", drop_duplicates=True)
    assert len(dedup) == 4001 - 567 and rep.dropped == {"duplicate": 567}


def test_charades_start_after_end_lines_and_what_clip_does(shared_data: Path) -> None:
    clip, rep = load_annotations(shared_data / "charades_sta/charades_sta_train.txt", on_bad="clip")
    examples = "\n".join(rep.examples["start_after_end"])
    for vid in ("LEOL6", "IOL8Q", "AKKWU"):
        assert vid in examples
    assert rep.dropped == {"start_after_end": 4}
    assert not {"LEOL6_0", "IOL8Q_0", "AKKWU_0", "AKKWU_1"} & {s.qid for s in clip}
    # the 4 hand-corrected VSLNet lines are the only difference between the two txt files
    vsl, _ = load_annotations(shared_data / "charades_sta/vslnet/charades_sta_train.txt", on_bad="clip")
    fixed = {s.qid: s.windows for s in vsl if s.qid in {"LEOL6_0", "IOL8Q_0", "AKKWU_0", "AKKWU_1"}}
    assert fixed == {"LEOL6_0": [(0.0, 2.5)], "IOL8Q_0": [(20.9, 25.8)], "AKKWU_0": [(3.4, 8.8)],
                     "AKKWU_1": [(3.4, 8.8)]}


def test_charades_txt_clipped_equals_lighthouse_jsonl(shared_data: Path) -> None:
    """Lighthouse drops the 4 start>end lines and clips 1802 ends to the csv duration: our clip policy."""
    ours, _ = load_annotations(shared_data / "charades_sta/charades_sta_train.txt", on_bad="clip")
    theirs, _ = load_annotations(shared_data / "charades_sta/charades_train_release.jsonl")
    assert [(s.vid, s.query, s.windows, s.duration) for s in ours] == \
           [(s.vid, s.query, s.windows, s.duration) for s in theirs]


def test_tacos_2dtan_frames_equal_lighthouse_seconds(shared_data: Path) -> None:
    ours, _ = load_annotations(shared_data / "tacos/2d-tan/train.json", on_bad="clip")
    theirs, _ = load_annotations(shared_data / "tacos/tacos_train_release.jsonl")
    assert [s.qid for s in ours] == [s.qid for s in theirs]  # "{vid}_{i}" as lighthouse numbers them
    for a, b in zip(ours, theirs):
        assert a.duration == pytest.approx(b.duration, abs=1e-9)
        assert _flat(a.windows) == pytest.approx(_flat(b.windows), abs=1e-9)


def test_activitynet_val1_equals_lighthouse_conversion(shared_data: Path) -> None:
    ours, _ = load_annotations(shared_data / "activitynet_captions/val_1.json", on_bad="clip")
    theirs, _ = load_annotations(shared_data / "activitynet_captions/activitynet_val_release.jsonl", on_bad="clip")
    assert [(s.vid, s.query) for s in ours] == [(s.vid, s.query) for s in theirs]
    assert max(abs(a.duration - b.duration) for a, b in zip(ours, theirs)) < 0.006  # lighthouse rounds to 0.01
    assert all(_flat(a.windows) == pytest.approx(_flat(b.windows), abs=1e-9) for a, b in zip(ours, theirs))


def test_durations_sources_agree(shared_data: Path) -> None:
    csv = load_durations(shared_data / "charades_sta/Charades_v1_train.csv")
    csv |= load_durations(shared_data / "charades_sta/Charades_v1_test.csv")
    assert len(csv) == 7985 + 1863 and csv["AO8RW"] == 33.67
    vsl = load_durations(shared_data / "charades_sta/vslnet/charades.json")
    assert len(vsl) == 9848 and all(vsl[k] == csv[k] for k in vsl)
    _, rep = load_annotations(shared_data / "charades_sta/vslnet/charades_sta_train.txt", on_bad="skip",
                              durations=shared_data / "charades_sta/vslnet/charades.json")
    assert rep.counts["window_past_duration"] == 1802 and rep.kept == 12408 - 1802


def test_time_r1_and_tvgbench_fields(shared_data: Path) -> None:
    tr, _ = load_annotations(shared_data / "time_r1/train_2k5.json", on_bad="clip")
    cropped = [s for s in tr if s.video_start is not None]
    assert len(cropped) == 665
    assert all(abs(s.duration - (s.video_end - s.video_start)) < 1e-6 for s in cropped)
    assert Counter(s.meta["source"] for s in tr) == {"cosmo": 801, "yt-temporal": 764, "internvid-vtime": 571,
                                                    "didemo": 237, "howto100m": 94, "queryd": 33}
    assert len({s.video for s in tr}) == 2475
    tvg, _ = load_annotations(shared_data / "time_r1/tvgbench.json", on_bad="skip")
    allv, _ = load_annotations(shared_data / "time_r1/tvgbench.json", on_bad="clip")
    # by bins.dataset; the 11 zero-length windows are egonlq, the 27 past the end charades 25 + egonlq 2
    assert Counter(s.meta["dataset"] for s in allv) == {"charades": 138, "hirest": 158, "tacos": 168,
                                                       "anet": 168, "egonlq": 168 - 11}
    assert Counter(s.meta["dataset"] for s in tvg) == {"charades": 138 - 25, "hirest": 158, "tacos": 168,
                                                      "anet": 168, "egonlq": 168 - 11 - 2}
    assert sum(s.video_start is not None for s in allv) == 252 - 11
    assert all(abs(s.duration - (s.video_end - s.video_start)) < 1e-6 for s in allv if s.video_start is not None)


def test_nextgqa_join_and_options(shared_data: Path) -> None:
    samples, rep = load_annotations(shared_data / "nextgqa/test.csv", on_bad="clip")  # csv or json: same
    assert rep.format == "nextgqa" and len(samples) == 5553
    assert sum(len(s.windows) for s in samples) == 6600
    assert sum(len(s.windows) > 1 for s in samples) == 591
    assert Counter(s.meta["type"] for s in samples) == {"TN": 1356, "TC": 852, "CW": 2456, "CH": 796, "TP": 93}
    assert all(s.meta["options"][s.meta["answer_idx"]] == s.meta["answer"] for s in samples)
    s = next(x for x in samples if x.qid == "2574374895_8")
    assert s.meta["answer"] == "lay on floor" and s.meta["answer_idx"] == 2
    val, _ = load_annotations(shared_data / "nextgqa/gsub_val.json", on_bad="clip")
    assert sum(len(s.windows) for s in val) == 3931


def test_rextime_answer_and_video_dir(shared_data: Path) -> None:
    samples, rep = load_annotations(shared_data / "rextime/rextime_val.jsonl", on_bad="clip")
    assert set(Counter(s.meta["answer"] for s in samples)) == {"A", "B", "C", "D"}
    assert sum(s.qid.startswith("qvh_val") for s in samples) == 180
    # with a video folder, samples point at it and absent files are counted
    ch, rep = load_annotations(shared_data / "charades_sta/charades_sta_test.txt", on_bad="clip",
                               video_dir=shared_data / "videos")
    assert rep.counts["missing_video"] == 3720 - 6 and rep.dropped["missing_video"] == 3720 - 6
    assert [s.vid for s in ch] == ["OHOFG"] * 6
    assert all(s.video == str(shared_data / "videos/OHOFG.mp4") for s in ch)


def test_non_annotation_files_are_refused_with_a_reason(shared_data: Path) -> None:
    with pytest.raises(ValueError, match="predictions"):
        detect_format(shared_data / "qvhighlights/sample_val_preds.jsonl")
    with pytest.raises(ValueError, match="durations"):
        detect_format(shared_data / "charades_sta/Charades_v1_train.csv")
    with pytest.raises(ValueError, match="--format, one of: activitynet, charades_sta"):
        detect_format(shared_data / "qvhighlights/LICENSE")
