"""No command prints a traceback for bad input: one line naming the file (and record), exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from timegrpo.cli import main
from timegrpo.errors import UnknownNameError


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    return rc, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_non_utf8_annotation_file(tmp_path, capsys):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"qid": 1, "query": "caf\xe9"}\n'.encode("latin-1"))
    for cmd in (["data", "inspect", str(bad)], ["score", "--predictions", str(bad), "--annotations", str(bad)]):
        rc, err = run(capsys, *cmd)
        assert rc == 2 and "not UTF-8 text" in one_line(err) and str(bad) in err


def test_a_non_utf8_predictions_file(shared_data, tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_bytes(b'{"qid": 1, "completion": "\xff"}\n')
    ann = shared_data / "charades_sta" / "charades_sta_test.txt"
    rc, err = run(capsys, "score", "--predictions", str(bad), "--annotations", str(ann))
    assert rc == 2 and f"{bad}: not UTF-8 text (byte 26" in one_line(err)


def test_a_file_of_the_wrong_kind(shared_data, capsys):
    rc, err = run(capsys, "data", "inspect", str(shared_data / "charades_sta" / "Charades_v1_test.csv"))
    assert rc == 2 and "is a Charades metadata (durations) file, not annotations" in one_line(err)


def test_a_valid_file_under_the_wrong_format_is_an_error_under_every_policy(shared_data, capsys):
    txt = shared_data / "charades_sta" / "charades_sta_test.txt"
    for policy in ("error", "skip", "clip"):
        rc, err = run(capsys, "data", "inspect", str(txt), "--format", "moment_detr", "--on-bad", policy)
        line = one_line(err)
        assert rc == 2 and "none of its 3720 records could be read as 'moment_detr'" in line
        assert "pass --format charades_sta" in line


def test_an_unknown_format_lists_the_known_ones(shared_data, capsys):
    rc, err = run(capsys, "data", "inspect", str(shared_data / "charades_sta" / "charades_sta_test.txt"),
                  "--format", "qvhighlights")
    assert rc == 2 and "unknown annotation format 'qvhighlights'; known: activitynet, charades_sta" in one_line(err)


def test_a_missing_file(tmp_path, capsys):
    rc, err = run(capsys, "data", "inspect", str(tmp_path / "nope.jsonl"))
    assert rc == 2 and "does not exist" in one_line(err)


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TIMEGRPO_DEBUG", raising=False)
    with pytest.raises(FileNotFoundError):
        main(["--debug", "data", "inspect", str(tmp_path / "nope.jsonl")])
    monkeypatch.setenv("TIMEGRPO_DEBUG", "1")
    there = tmp_path / "a.jsonl"
    there.write_text("{}\n")
    with pytest.raises(UnknownNameError):
        main(["data", "inspect", str(there), "--format", "nosuch"])


def test_the_error_header_counts_bad_records_not_anomalies(shared_data, capsys):
    # Time-R1's Charades list: 1796 anomalies (a record can have two) in 1790 records
    rc, err = run(capsys, "data", "inspect", str(shared_data / "charades_sta" / "time-r1" / "train.json"))
    assert rc != 0
    assert ("1790 bad record(s) of 12408 (activitynet reader); anomalies: start_after_end 4, start_past_duration 3, "
            "window_past_duration 1789") in err


def test_a_bad_config_value_in_train(tmp_path, capsys):
    rc, err = run(capsys, "train", "--config", str(Path(__file__).parents[2] / "recipes" / "tiny_cpu.yaml"),
                  "--train.beta", "-1", "--print-config")
    assert rc == 2 and "beta" in one_line(err)
