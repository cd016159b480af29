"""``timegrpo eval`` end to end on CPU with a tiny Qwen2.5-VL: real videos with their real annotations, a
synthetic split, resuming after a crash or a kill, data-parallel shards, bad videos, changed settings."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from timegrpo.cli import build_parser
from timegrpo.cli.eval import config_from_args
from timegrpo.data.formats import load_annotations
from timegrpo.evaluate.run import Dist, run_eval
from timegrpo.metrics import grounding_metrics
from timegrpo.parsing import parse_answer
from timegrpo.rewards import get_reward
from timegrpo.spans import temporal_iou

PNG = b"\x89PNG\r\n\x1a\n"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def charades_ohofg(shared_data: Path, tmp_path: Path) -> Path:
    """The 6 Charades-STA test queries of the real video OHOFG, as a txt of the original format."""
    src = (shared_data / "charades_sta" / "charades_sta_test.txt").read_text(encoding="utf-8")
    path = tmp_path / "charades_ohofg.txt"
    path.write_text("".join(ln + "\n" for ln in src.splitlines() if ln.startswith("OHOFG ")), encoding="utf-8")
    return path


def test_charades_real_videos_with_real_generate(shared_data, tmp_path, tiny_model, count_generate, run_cli):
    """Real videos through the real batched ``generate`` of a (random) tiny model: one record per query, every
    record's parse fields are what the parser reads from its completion, metrics.json is what the records give
    (and what ``timegrpo score`` gives), and batching does not change a completion (left padding)."""
    ann = charades_ohofg(shared_data, tmp_path)
    durations = shared_data / "charades_sta" / "Charades_v1_test.csv"
    argv = ["eval", "--model", str(tiny_model), "--annotations", str(ann), "--format", "charades_sta",
            "--durations", str(durations), "--videos", str(shared_data / "videos"), "--max-new-tokens", "4",
            "--fps", "0.5", "--min-pixels", "784", "--max-pixels", "3136", "--total-pixels", "200000"]
    out = tmp_path / "out"
    gen = count_generate()
    rc, stdout, _ = run_cli([*argv, "--out", str(out), "--batch-size", "4"])
    assert rc == 0
    assert gen.prompts == [4, 2]  # several prompts per generate call
    preds = lines(out / "predictions.jsonl")
    samples, _ = load_annotations(ann, "charades_sta", durations=durations)
    assert [p["qid"] for p in preds] == [s.qid for s in samples] == [f"OHOFG_{i}" for i in range(6)]
    assert preds[0]["query"] == "a person is eating some food." and preds[0]["duration"] == 35.04
    for p, s in zip(preds, samples):
        span = parse_answer(p["completion"], s.duration)
        assert p["completion"] and isinstance(p["truncated"], bool)
        assert p["pred_relevant_windows"] == ([] if span is None else [[span[0], span[1], 1.0]])
        assert p["iou"] == temporal_iou(span, s.windows)
    metrics = json.loads((out / "metrics.json").read_text())
    fmt = get_reward("format")([p["completion"] for p in preds])
    assert metrics["format_rate"] == round(100 * sum(fmt) / 6, 2)
    assert (metrics["n"], metrics["unparsed"], metrics["skipped"]) == (6, sum(not p["pred_relevant_windows"]
                                                                            for p in preds), {})
    assert metrics["n_truncated"] == sum(p["truncated"] for p in preds)
    expected = grounding_metrics([p["iou"] for p in preds])
    assert {k: metrics[k] for k in expected} == expected
    rc, scored, _ = run_cli(["score", "--predictions", str(out / "predictions.jsonl"), "--annotations", str(ann),
                             "--durations", str(durations), "--json"])
    assert rc == 0 and {k: json.loads(scored)[k] for k in expected} == expected
    cfg = json.loads((out / "eval_config.json").read_text())
    assert cfg["sampling"] == {"num_generations": 1, "max_completion_length": 4, "min_completion_length": 0,
                               "temperature": 1.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0,
                               "do_sample": False, "seed": 0}
    assert cfg["video"]["fps"] == 0.5 and cfg["video"]["max_pixels"] == 3136 and cfg["video"]["max_frames"] == 768
    assert cfg["template"]["name"] == "think" and cfg["template"]["normalize"] is True
    assert cfg["annotations"]["format"] == "charades_sta" and "transformers" in cfg["versions"]
    assert "| n | 6 |" in (out / "metrics.md").read_text() and "| mIoU |" in stdout
    for name in ("iou_hist.png", "r1_by_length.png", "centres.png"):
        assert (out / "plots" / name).read_bytes()[:8] == PNG
    assert run_cli([*argv, "--out", str(tmp_path / "one"), "--batch-size", "1"])[0] == 0
    assert gen.prompts == [4, 2] + [1] * 6
    assert (tmp_path / "one" / "predictions.jsonl").read_bytes() == (out / "predictions.jsonl").read_bytes()


def test_activitynet_real_videos_known_answers(shared_data, tmp_path, tiny_model, fake_answers, run_cli):
    """Real ActivityNet videos and annotations; the completions are fixed so every metric is known by hand."""
    train = json.loads((shared_data / "activitynet_captions" / "train.json").read_text())
    ann = tmp_path / "anet.json"
    ann.write_text(json.dumps({v: train[v] for v in ("v_TpB_zMG3XBA", "v_rBMQFpHspmo")}))
    answers = {
        "v_rBMQFpHspmo_0": "<think>a</think><answer>0.00 to 17.32</answer>",  # GT [0, 17.32]: IoU 1
        "v_rBMQFpHspmo_1": "<think>a</think><answer>20.00 to 93.80</answer>",  # GT [15.15, 93.8]: 73.8/78.65
        "v_rBMQFpHspmo_2": "<answer>90 to 125.55</answer>",  # GT [85.14, 125.55]: 35.55/40.41; no think
        "v_TpB_zMG3XBA_0": "<think>a</think><answer>0 to 10</answer>",  # GT [0, 7.34]: 0.734
        "v_TpB_zMG3XBA_1": "TRUNC I do not know",  # unparsed, truncated
        "v_TpB_zMG3XBA_2": "<think>a</think><answer>60.00 to 100.00</answer>",  # GT [51.36, 119.84]: 40/68.48
        "v_TpB_zMG3XBA_3": "<think>a</think><answer>200 to 300</answer>",  # clamped to [163.05, 163.05]: 0
        "v_TpB_zMG3XBA_4": "<think>a</think><answer>144.30 to 150.82</answer>",  # exact: 1
        "v_TpB_zMG3XBA_5": "<think>a</think><answer>150 to 170</answer>",  # [150, 163.05] vs [158.16, 163.05]
    }
    asked = fake_answers(answers.__getitem__)
    out = tmp_path / "out"
    rc, _, _ = run_cli(["eval", "--model", str(tiny_model), "--annotations", str(ann), "--videos",
                        str(shared_data / "videos"), "--out", str(out), "--nframes", "4", "--max-pixels", "3136",
                        "--min-pixels", "784", "--batch-size", "4"])
    assert rc == 0 and sorted(asked) == sorted(answers)
    ious = [1.0, 73.8 / 78.65, 35.55 / 40.41, 0.734, 0.0, 40 / 68.48, 0.0, 1.0, 4.89 / 13.05]
    m = json.loads((out / "metrics.json").read_text())
    assert m["mIoU"] == pytest.approx(100 * sum(ious) / 9, abs=1e-3)  # 61.23
    assert (m["R1@0.3"], m["R1@0.5"], m["R1@0.7"]) == pytest.approx((700 / 9, 600 / 9, 500 / 9))
    assert m["format_rate"] == pytest.approx(77.78)  # 7 of 9 match <think>..</think><answer>..</answer>
    assert (m["n"], m["unparsed"], m["n_truncated"], m["n_skipped"]) == (9, 1, 1, 0)
    assert m["annotations"]["anomalies"]["whitespace_query"] == 7  # the sentences' leading spaces, counted
    by_qid = {p["qid"]: p for p in lines(out / "predictions.jsonl")}
    assert by_qid["v_TpB_zMG3XBA_3"]["pred_relevant_windows"] == [[163.05, 163.05, 1.0]]
    assert by_qid["v_TpB_zMG3XBA_1"]["completion"] == "TRUNC I do not know"


def test_synthetic_limit_then_full_does_not_redo_work(synth_dir, tmp_path, count_generate, synth_args, run_cli):
    ann, out = synth_dir / "test.jsonl", tmp_path / "out"
    gen = count_generate()
    assert run_cli(synth_args(ann, out, "--limit", "4"))[0] == 0
    assert gen.prompts == [3, 1]
    first = (out / "predictions.jsonl").read_bytes()
    assert json.loads((out / "metrics.json").read_text())["n"] == 4
    rc, _, err = run_cli(synth_args(ann, out))
    assert rc == 0 and "4 already predicted, 6 to do" in err
    assert gen.prompts == [3, 1, 3, 3]  # only the 6 new samples were generated
    data = (out / "predictions.jsonl").read_bytes()
    assert data.startswith(first)  # the first lines are untouched
    preds = lines(out / "predictions.jsonl")
    assert [p["qid"] for p in preds] == [f"synth_{i:05d}" for i in range(10)]
    m = json.loads((out / "metrics.json").read_text())
    assert (m["n"], m["run"]["n_done_before"], m["run"]["n_to_do"]) == (10, 4, 6)
    rc, _, err = run_cli(synth_args(ann, out))  # everything done: no model call at all
    assert rc == 0 and "10 already predicted, 0 to do" in err and len(gen.prompts) == 4


def test_crash_and_torn_last_line_resume(synth_dir, tmp_path, count_generate, synth_args, run_cli):
    """A crash in the second batch keeps the first batch; a torn last line (a kill mid-write) is dropped,
    said, and counted; the rerun predicts exactly the rest."""
    ann, out = synth_dir / "test.jsonl", tmp_path / "out"
    gen = count_generate(fail_on=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cli(synth_args(ann, out))
    kept = (out / "predictions.jsonl").read_bytes()
    assert [p["qid"] for p in lines(out / "predictions.jsonl")] == ["synth_00000", "synth_00001", "synth_00002"]
    with open(out / "predictions.jsonl", "ab") as f:
        f.write(b'{"qid": "synth_00003", "vid": "synth_00003", "compl')  # killed while writing line 4
    gen.fail_on = None
    rc, _, err = run_cli(synth_args(ann, out))
    assert rc == 0 and "partially written line" in err and "3 already predicted, 7 to do" in err
    assert gen.prompts == [3, 3, 3, 1]  # batch 1 before the crash, then only the 7 missing samples
    data = (out / "predictions.jsonl").read_bytes()
    assert data.startswith(kept) and data.count(b"\n") == 10
    assert len({p["qid"] for p in lines(out / "predictions.jsonl")}) == 10
    assert json.loads((out / "metrics.json").read_text())["run"]["dropped_partial_lines"] == 1


def test_changed_settings_are_refused_then_overwrite(synth_dir, tmp_path, fake_answers, synth_args, run_cli):
    ann, out = synth_dir / "test.jsonl", tmp_path / "out"
    asked = fake_answers(lambda q: "<answer>1 to 5</answer>")
    assert run_cli(synth_args(ann, out, "--limit", "2"))[0] == 0
    rc, _, err = run_cli(synth_args(ann, out, "--limit", "2", "--max-new-tokens", "8"))
    assert rc == 2 and "sampling.max_completion_length: 3 -> 8" in err and "--overwrite" in err
    assert run_cli(synth_args(ann, out, "--limit", "2", "--max-new-tokens", "8", "--overwrite"))[0] == 0
    assert asked == ["synth_00000", "synth_00001"] * 2
    assert json.loads((out / "eval_config.json").read_text())["sampling"]["max_completion_length"] == 8


def test_bad_videos_skip_counted_or_error(synth_dir, tmp_path, fake_answers, synth_args, run_cli):
    recs = lines(synth_dir / "test.jsonl")
    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 20)
    recs[1]["video"] = str(tmp_path / "broken.mp4")
    recs[2]["video"] = str(tmp_path / "absent.mp4")
    for r in recs:
        if not r["video"].startswith("/"):
            r["video"] = str(synth_dir / r["video"])
    ann = tmp_path / "test.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in recs))
    fake_answers(lambda q: "<answer>1 to 5</answer>")
    rc, _, err = run_cli(synth_args(ann, tmp_path / "skip", "--on-bad", "skip"))
    assert rc == 0 and "2 samples left out" in err
    m = json.loads((tmp_path / "skip" / "metrics.json").read_text())
    assert m["skipped"] == {"missing_video": 1, "unreadable_video": 1} and m["n_skipped"] == 2 and m["n"] == 8
    skipped = lines(tmp_path / "skip" / "skipped.jsonl")
    assert [(s["qid"], s["kind"]) for s in skipped] == [("synth_00001", "unreadable_video"),
                                                        ("synth_00002", "missing_video")]
    assert "| n_skipped_unreadable_video | 1 |" in (tmp_path / "skip" / "metrics.md").read_text()
    del recs[2]  # only the unreadable video left: error names the file and the sample
    ann.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rc, _, err = run_cli(synth_args(ann, tmp_path / "error"))
    assert rc == 2 and "broken.mp4" in err and "qid synth_00001" in err and "--on-bad skip" in err


def test_data_parallel_ranks_merge_in_order(synth_dir, tmp_path, tiny_model, fake_answers, synth_args, run_cli):
    """Two ranks (threads with a real barrier) each predict their shard into a part file; rank 0 merges them in
    annotation order, byte for byte what a single process writes."""
    ann = synth_dir / "test.jsonl"
    asked = fake_answers(lambda q: f"<answer>{int(q[-1])} to {int(q[-1]) + 3}</answer>")
    args, overrides = build_parser().parse_known_args(synth_args(ann, tmp_path / "dp", "--limit", "7"))
    args.overrides = overrides
    cfg = config_from_args(args)
    barrier = threading.Barrier(2, timeout=120)
    results: dict[int, object] = {}

    def rank(r: int) -> None:
        results[r] = run_eval(cfg, Dist(r, 2, barrier.wait, "cpu"))

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[1] is None and results[0]["n"] == 7 and sorted(asked) == [f"synth_{i:05d}" for i in range(7)]
    assert not (tmp_path / "dp" / "parts").exists()
    assert run_cli(synth_args(ann, tmp_path / "single", "--limit", "7"))[0] == 0
    single = (tmp_path / "single" / "predictions.jsonl").read_bytes()
    assert (tmp_path / "dp" / "predictions.jsonl").read_bytes() == single


def test_qvhighlights_style_annotations_get_the_official_keys(synth_dir, tmp_path, fake_answers, synth_args,
                                                              run_cli):
    recs = lines(synth_dir / "test.jsonl")[:4]
    for r in recs:  # QVHighlights fields: 2-second clips inside the window, three raters' saliency
        s, e = r["relevant_windows"][0]
        r["relevant_clip_ids"] = list(range(int(s // 2), int(-(-e // 2))))
        r["saliency_scores"] = [[2, 3, 4]] * len(r["relevant_clip_ids"])
        r["video"] = str(synth_dir / r["video"])
    ann = tmp_path / "qvh.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in recs))
    windows = {r["qid"]: r["relevant_windows"][0] for r in recs}
    fake_answers(lambda q: "<answer>{} to {}</answer>".format(*windows[q]) if q != "synth_00001" else "none")
    assert run_cli(synth_args(ann, tmp_path / "out"))[0] == 0
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["benchmark"] == "qvhighlights"
    assert m["MR-full-R1@0.5"] == m["R1@0.5"] == 75.0 and m["MR-full-R1@0.7"] == 75.0
    assert m["MR-full-mAP"] == pytest.approx(75.0) and m["unparsed"] == 1
