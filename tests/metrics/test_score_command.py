"""``timegrpo score`` on real annotation files: counting of missing / unknown / duplicated / unparsable
predictions, completion parsing, and the grounded-QA metric sets."""

from __future__ import annotations

import json

import pytest

from timegrpo.cli import main
from timegrpo.data.formats import load_annotations
from timegrpo.evaluate.score import markdown_table, score_samples


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _score(capsys, *args):
    assert main(["score", *map(str, args), "--json"]) == 0
    captured = capsys.readouterr()
    _score.stderr = captured.err
    return json.loads(captured.out)


def test_missing_unknown_duplicate_and_unparsable_are_counted(shared_data, tmp_path, capsys):
    ann = shared_data / "charades_sta" / "charades_sta_test.txt"
    samples, _ = load_annotations(ann, on_bad="clip")
    recs = [{"qid": s.qid, "completion": f"<answer>{s.windows[0][0]} to {s.windows[0][1]}</answer>"}
            for s in samples[:10]]
    recs[3]["completion"] = "I do not know"
    recs += [{"qid": samples[0].qid, "completion": "<answer>0 to 1</answer>"},  # duplicate: the first is used
             {"qid": "not-a-qid", "completion": "<answer>0 to 1</answer>"}]
    pred = _write(tmp_path / "p.jsonl", recs)
    got = _score(capsys, "--predictions", pred, "--annotations", ann)
    for note in (f"{len(samples) - 10} annotations without a prediction", "1 predictions whose qid is not in",
                 "1 duplicated prediction qids", f"{len(samples) - 9} queries without a parsable prediction"):
        assert note in _score.stderr
    n = len(samples)
    assert got["n_annotations"] == n and got["n_missing_prediction"] == n - 10
    assert got["n_unknown_qid"] == 1 and got["n_duplicate_prediction"] == 1
    assert got["n_unparsed"] == 1 + (n - 10)  # the bad completion and every missing prediction
    assert got["n_annotation_window_past_duration"] == 562  # the reader's anomaly counts ride along
    # 9 exact answers out of n queries (GT clipped to the duration, as the predictions were)
    assert got["R1@0.7"] == pytest.approx(100 * 9 / n) and got["mIoU"] == pytest.approx(100 * 9 / n)
    skipped = _score(capsys, "--predictions", pred, "--annotations", ann, "--missing", "skip")
    assert skipped["n_scored"] == 10 and skipped["R1@0.7"] == pytest.approx(90.0)


def test_strict_parsing_through_the_command(shared_data, tmp_path, capsys):
    ann = shared_data / "qvhighlights" / "highlight_val_release.jsonl"
    samples, _ = load_annotations(ann)
    s = samples[0]
    (gs, ge) = s.windows[0]
    pred = _write(tmp_path / "p.jsonl", [{"qid": s.qid, "completion": f"<answer>{gs}-{ge}</answer>"}])
    tolerant = _score(capsys, "--predictions", pred, "--annotations", ann, "--missing", "skip")
    strict = _score(capsys, "--predictions", pred, "--annotations", ann, "--missing", "skip", "--strict")
    assert tolerant["R1@0.7"] == 100.0 and tolerant["n_unparsed"] == 0
    assert strict["R1@0.7"] == 0.0 and strict["n_unparsed"] == 1
    # no saliency predicted: MR keys only, HL keys absent
    assert "MR-full-mAP" in tolerant and not any(k.startswith("HL-") for k in tolerant)


def test_rextime(shared_data, capsys, tmp_path):
    ann = shared_data / "rextime" / "rextime_val.jsonl"
    samples, _ = load_annotations(ann, on_bad="clip")
    recs = []
    for i, s in enumerate(samples[:4]):
        gs, ge = s.windows[0]
        # 0: right answer, exact span | 1: right answer, no span | 2: wrong answer, exact | 3: answer parsed
        text = [f"<answer>{gs} to {ge}</answer>", "<answer>no idea</answer>", f"<answer>{gs} to {ge}</answer>",
                f"<answer>({s.meta['answer']}) {gs} to {ge}</answer>"][i]
        rec = {"qid": s.qid, "completion": text}
        if i < 3:
            rec["pred_answer"] = s.meta["answer"] if i < 2 else "Z"
        recs.append(rec)
    pred = _write(tmp_path / "p.jsonl", recs)
    got = _score(capsys, "--predictions", pred, "--annotations", ann, "--missing", "skip")
    assert got["n_scored"] == 4
    assert got["Acc"] == 75.0 and got["Acc@IoU>=0.5"] == 50.0 and got["R1@0.5"] == 75.0


def test_nextgqa_from_glue_completions(shared_data):
    samples, report = load_annotations(shared_data / "nextgqa" / "val.csv", on_bad="clip")
    chosen = [s for s in samples if s.windows][:2]
    preds = {}
    for s, letter_ok in zip(chosen, (True, False)):
        gs, ge = s.windows[0]
        letter = "ABCDE"[s.meta["answer_idx"]] if letter_ok else "ABCDE"[(s.meta["answer_idx"] + 1) % 5]
        preds[s.qid] = {"qid": s.qid, "completion": f"<think>x</think><answer>({letter})</answer><glue>[({gs}, {ge})]</glue>"}
    result = score_samples(chosen, preds, benchmark="nextgqa")
    assert result.metrics["mIoP"] == 100.0 and result.metrics["Acc@GQA"] == 50.0 and result.metrics["Acc@QA"] == 50.0
    assert result.counts["n_unparsed"] == 0 and result.counts["n_unparsed_answer"] == 0
    assert "| Acc@GQA | 50.00 |" in markdown_table(result)


def test_bad_prediction_file_names_the_line(shared_data, tmp_path, capsys):
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"qid": 1, "completion": "x"}\n{oops\n')
    args = ["score", "--predictions", str(pred),
            "--annotations", str(shared_data / "qvhighlights" / "highlight_val_release.jsonl")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "p.jsonl line 2: not valid json" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
