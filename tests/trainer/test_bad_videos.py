"""``timegrpo train`` / ``sft`` over unreadable videos: skip replaces, counts and lists them; error stops with one
clear line. The replacement is the next readable sample of the file, so it does not depend on the layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from timegrpo.cli import main
from timegrpo.models.tiny import save_tiny_vlm

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml")


def broken_split(synth_dir: Path, tmp_path: Path, broken_videos) -> tuple[Path, list[str]]:
    """A copy of the 8 training samples with samples 1 and 2 pointing at a corrupt-frame and a zero-byte mp4."""
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    recs = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()]
    broken_videos(data / recs[0]["video"], data / "videos")
    recs[1]["video"], recs[2]["video"] = "videos/corrupt.mp4", "videos/zero.mp4"
    ann = data / "train.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return ann, [recs[1]["qid"], recs[2]["qid"]]


def test_train_skips_replaces_and_lists_bad_videos(synth_dir, tmp_path, broken_videos, capsys):
    ann, bad_qids = broken_split(synth_dir, tmp_path, broken_videos)
    tiny = save_tiny_vlm("qwen2_5_vl", tmp_path / "tiny")
    common = ["--config", RECIPE, "--model.model_name_or_path", str(tiny), "--data.train_file", str(ann),
              "--data.video_dir", str(ann.parent), "--data.frame_cache_dir", str(tmp_path / "frames"),
              "--max_steps", "2", "--num_generations", "2", "--per_device_train_batch_size", "4",
              "--max_completion_length", "4", "--logging_steps", "1", "--train.shuffle_dataset", "false"]
    out = tmp_path / "skip"
    assert main(["train", *common, "--output_dir", str(out), "--data.on_bad", "skip", "--log_completions"]) == 0
    skipped = [json.loads(x) for x in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(s["qid"], s["kind"], s["index"]) for s in skipped] == [(bad_qids[0], "unreadable_video", 1),
                                                                     (bad_qids[1], "empty_video", 2)]
    assert "corrupt.mp4" in skipped[0]["detail"] and "zero.mp4" in skipped[1]["detail"]
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["skipped_samples"] for m in steps] == [2.0, 0.0]  # step 1 took samples 0-3, step 2 samples 4-7
    trained = [json.loads(x)["qid"] for x in (out / "completions.jsonl").read_text().splitlines()]
    assert not set(bad_qids) & set(trained)
    # samples 1 and 2 were replaced by sample 3, the next readable one: it trains three times in step 1
    third = json.loads(ann.read_text().splitlines()[3])["qid"]
    assert trained[:8].count(third) == 2 * 3  # G = 2 completions each

    capsys.readouterr()
    assert main(["train", *common, "--output_dir", str(tmp_path / "error")]) == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "error:" in x]  # beside the progress bars, one line
    assert "Traceback" not in err and line.startswith("timegrpo train: error: ")
    assert "corrupt.mp4" in line and f"qid {bad_qids[0]}" in line and "--data.on_bad skip" in line


def test_a_nan_reward_stops_training_naming_the_reward_and_the_qid(synth_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    tiny = save_tiny_vlm("qwen2_5_vl", tmp_path / "tiny")
    rc = main(["train", "--config", RECIPE, "--model.model_name_or_path", str(tiny),
               "--data.train_file", str(synth_dir / "train.jsonl"), "--data.video_dir", str(synth_dir),
               "--data.frame_cache_dir", str(tmp_path / "frames"), "--max_steps", "1", "--num_generations", "2",
               "--per_device_train_batch_size", "2", "--max_completion_length", "4",
               "--train.reward_funcs", "trl_style_rewards:broken_reward", "--train.reward_weights", "1", "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert rc == 2 and "Traceback" not in err
    assert "reward 'trl_style_rewards:broken_reward' returned nan for sample 1 (qid 'synth_" in line
