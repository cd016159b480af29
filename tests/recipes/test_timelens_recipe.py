"""recipes/timelens_100k_qwen3_vl_8b.yaml keeps TimeLens's GRPO settings and trains on a TimeLens-100K jsonl (the
tiny model and synthetic videos in place of Qwen3-VL-8B and the real videos)."""

from __future__ import annotations

import json
from pathlib import Path

from timegrpo.cli import main
from timegrpo.config import load_recipe
from timegrpo.data.synthetic import SynthConfig, generate
from timegrpo.models.tiny import save_tiny_vlm

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "timelens_100k_qwen3_vl_8b.yaml"


def test_recipe_has_timelens_grpo_settings():
    cfg = load_recipe(RECIPE, [])
    d, t = cfg.data, cfg.train
    assert (cfg.method, d.format, d.prompt_template) == ("grpo", "timelens_100k", "no_think")
    assert (d.fps, d.min_pixels, d.total_pixels, d.max_frames) == (2.0, 64 * 32 * 32, 14336 * 32 * 32, 448)
    assert (t.learning_rate, t.lr_scheduler_type, t.beta, t.scale_rewards, t.loss_type) == (
        1e-6, "constant", 0.0, "none", "bnpo")
    assert (t.num_generations, t.temperature, t.max_completion_length, t.max_steps) == (8, 1.0, 512, 100)
    assert t.per_device_train_batch_size * t.gradient_accumulation_steps * 8 == 64
    assert t.reward_funcs == ["iou"]
    assert cfg.sft.per_device_train_batch_size * cfg.sft.gradient_accumulation_steps * 8 == 128


def test_recipe_trains_on_a_timelens_100k_file(tmp_path):
    synth = tmp_path / "synth"
    generate(SynthConfig(n=4, seed=0, val_size=0, test_size=0, min_duration=6, max_duration=8), synth)
    rows = [json.loads(x) for x in (synth / "train.jsonl").read_text().splitlines()]
    videos = tmp_path / "TimeLens-100K" / "videos"
    (videos / "synth").mkdir(parents=True)
    for r in rows:  # TimeLens's layout: videos/<source>/<file>, one jsonl line per video with its events
        (videos / "synth" / Path(r["video"]).name).symlink_to((synth / r["video"]).resolve())
    train = tmp_path / "TimeLens-100K" / "timelens-100k.jsonl"
    train.write_text("".join(json.dumps({"video_path": f"synth/{Path(r['video']).name}", "duration": r["duration"],
                                         "source": "synth", "events": [{"query": r["query"] + ".",
                                                                        "span": r["relevant_windows"]}]}) + "\n"
                             for r in rows))
    tiny = save_tiny_vlm("qwen3_vl", tmp_path / "tiny")
    out = tmp_path / "run"
    assert main(["train", "--config", str(RECIPE), "--model.model_name_or_path", str(tiny),
                 "--model.torch_dtype", "float32", "--model.attn_implementation", "sdpa",
                 "--model.gradient_checkpointing", "false", "--train.bf16", "false",
                 "--data.train_file", str(train), "--data.video_dir", str(videos), "--data.num_workers", "0",
                 "--data.min_pixels", "1024", "--data.total_pixels", "null", "--data.max_pixels", "4096",
                 "--max_steps", "1", "--gradient_accumulation_steps", "1", "--per_device_train_batch_size", "2",
                 "--num_generations", "2", "--max_completion_length", "6", "--report_to", "none",
                 "--logging_steps", "1", "--save_steps", "0", "--output_dir", str(out)]) == 0
    (line,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert line["step"] == 1 and "rewards/iou/mean" in line
