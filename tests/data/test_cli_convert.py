"""`timegrpo data inspect | convert | frames` and the moment_detr / Hugging Face conversions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from timegrpo.cli import main
from timegrpo.data.convert import from_hf_dataset, to_hf_dataset, write_moment_detr
from timegrpo.data.formats import load_annotations
from timegrpo.data.schema import Sample


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    rc = main(list(argv))
    return rc, json.loads(capsys.readouterr().out)


def test_inspect_json(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = str(shared_data / "charades_sta/charades_sta_train.txt")
    rc, out = _run_json(capsys, "data", "inspect", f, "--on-bad", "skip", "--json")
    assert rc == 0 and out["format"] == "charades_sta" and out["samples"] == 12408 - 1806
    assert out["anomalies"] == {"start_after_end": 4, "start_past_duration": 3, "window_past_duration": 1805,
                                "window_past_duration_over_1s": 734}
    assert out["dropped"] == {"start_after_end": 4, "window_past_duration": 1802}
    assert out["stats"]["videos"] <= 5338 and out["stats"]["duration"]["max"] > out["stats"]["duration"]["min"]
    # the default policy refuses the file but still reports its counts, and says how to load it
    rc, out = _run_json(capsys, "data", "inspect", f, "--json")
    assert rc == 1 and out["samples"] is None and out["anomalies"]["start_after_end"] == 4
    assert "--on-bad skip" in out["error"]


def test_inspect_text(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "inspect", str(shared_data / "qvhighlights/highlight_val_release.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "format    moment_detr" in out and "kept 1550" in out and "anomalies: none" in out
    assert "multi-window 530" in out


def test_convert_2dtan_tacos_reproduces_lighthouse(shared_data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tacos_test.jsonl"
    assert main(["data", "convert", str(shared_data / "tacos/2d-tan/test.json"), "--on-bad", "clip",
                 "--to", "moment_detr", "--out", str(out)]) == 0
    assert "wrote 4001 samples" in capsys.readouterr().out
    ours = [json.loads(line) for line in out.read_text().splitlines()]
    theirs = [json.loads(line) for line in (shared_data / "tacos/tacos_test_release.jsonl").read_text().splitlines()]
    assert [(o["qid"], o["vid"], o["query"].strip()) for o in ours] == \
           [(t["qid"], t["vid"], t["query"].strip()) for t in theirs]
    assert all(o["relevant_windows"][0] == pytest.approx(t["relevant_windows"][0], abs=1e-9)
               and len(o["relevant_windows"]) == len(t["relevant_windows"]) == 1 for o, t in zip(ours, theirs))


def test_moment_detr_round_trip_keeps_meta_and_int_qids(shared_data: Path, tmp_path: Path) -> None:
    samples, _ = load_annotations(shared_data / "qvhighlights/highlight_val_release.jsonl")
    path = write_moment_detr(samples, tmp_path / "val.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    raw = json.loads((shared_data / "qvhighlights/highlight_val_release.jsonl").read_text().splitlines()[0])
    assert first == raw  # same keys and values (qid an int again); only the key order may differ
    back, rep = load_annotations(path)
    assert back == samples and rep.counts == {}


def test_hf_dataset_round_trip(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datasets

    samples, _ = load_annotations(shared_data / "time_r1/tvgbench.json", on_bad="clip")
    ds = to_hf_dataset(samples)
    assert ds.num_rows == 789 and ds.features["windows"].feature.feature.dtype == "float64"
    assert from_hf_dataset(ds) == samples
    assert main(["data", "convert", str(shared_data / "nextgqa/gsub_val.json"), "--on-bad", "clip", "--to", "hf",
                 "--out", str(tmp_path / "hf")]) == 0
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    assert loaded.num_rows == 3358 and json.loads(loaded[0]["meta"])["options"]
    back = from_hf_dataset(loaded)
    assert sum(len(s.windows) for s in back) == 3931


def test_video_paths_written_relative_to_the_output(tmp_path: Path) -> None:
    s = Sample("1", "v", str(tmp_path / "videos" / "v.mp4"), 4.0, "q", [(0.0, 1.0)], video_start=2.0, video_end=6.0)
    path = write_moment_detr([s], tmp_path / "a.jsonl")
    rec = json.loads(path.read_text())
    assert rec["video"] == "videos/v.mp4" and rec["video_start"] == 2.0 and rec["qid"] == 1
    (back,), _ = load_annotations(path)
    assert back == s
    with pytest.raises(ValueError, match="clashes"):
        write_moment_detr([Sample("1", "v", None, 4.0, "q", [(0.0, 1.0)], meta={"vid": "x"})], tmp_path / "b.jsonl")


def test_frames_command(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = str(shared_data / "videos/charades.mp4")
    args = ["data", "frames", video, "--video-end", "6", "--min-pixels", "784", "--max-pixels", "3136",
            "--cache", str(tmp_path), "--json"]
    rc, out = _run_json(capsys, *args)
    assert rc == 0 and out["frames_shape"][0] == 12 and len(out["timestamps"]) == 12 and not out["from_cache"]
    assert out["timestamps"][-1] <= 6.0
    rc, out = _run_json(capsys, *args)
    assert out["from_cache"]
