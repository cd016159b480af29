"""``timegrpo eval`` over broken videos and bad records: skip names every sample it left out, error stops with
one line."""

from __future__ import annotations

import json
from pathlib import Path


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_corrupt_and_empty_videos_beside_good_ones(synth_dir, tmp_path, fake_answers, synth_args, run_cli,
                                                   broken_videos):
    recs = lines(synth_dir / "test.jsonl")[:4]
    for r in recs:
        r["video"] = str(synth_dir / r["video"])
    broken = broken_videos(Path(recs[0]["video"]), tmp_path / "broken")
    recs[1]["video"], recs[2]["video"] = str(broken["corrupt"]), str(broken["zero"])
    recs.append({**recs[3], "qid": "bad_window", "relevant_windows": [[5.0, 1.0]]})  # dropped by the reader
    ann = tmp_path / "test.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in recs))
    fake_answers(lambda q: "<answer>1 to 5</answer>")
    rc, _, err = run_cli(synth_args(ann, tmp_path / "skip", "--on-bad", "skip"))
    assert rc == 0 and "3 samples left out" in err
    skipped = lines(tmp_path / "skip" / "skipped.jsonl")
    assert [(s["qid"], s["kind"], s["stage"]) for s in skipped] == [
        ("bad_window", "start_after_end", "annotation"), (recs[1]["qid"], "unreadable_video", "video"),
        (recs[2]["qid"], "empty_video", "video")]
    assert "corrupt.mp4" in skipped[1]["detail"] and "zero.mp4" in skipped[2]["detail"]
    assert json.loads((tmp_path / "skip" / "metrics.json").read_text())["n"] == 2
    rc, _, err = run_cli(synth_args(ann, tmp_path / "error", "--on-bad", "error"))
    assert rc == 2 and "Traceback" not in err and "1 bad record(s) of 5" in err and "qid bad_window" in err
    del recs[-1]
    ann.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rc, _, err = run_cli(synth_args(ann, tmp_path / "error2", "--on-bad", "error"))
    assert rc == 2 and "corrupt.mp4" in err and f"qid {recs[1]['qid']}" in err and "Traceback" not in err
