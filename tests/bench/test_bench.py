"""`timegrpo bench`: what it reports and how it matches the work of the two trainers (no timing thresholds)."""

from __future__ import annotations

import io
import json
import os
import types
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch

from timegrpo.bench import timing as timing_module
from timegrpo.bench.arch import ARCHS, parameter_counts, save_arch_model, shrink
from timegrpo.bench.pipeline import measure_video
from timegrpo.bench.report import write_markdown
from timegrpo.bench.sides import GROUPS, PHASES
from timegrpo.bench.timing import Patcher, PhaseTimer
from timegrpo.bench.trl_side import frames_to_images, image_messages
from timegrpo.bench.workload import BenchConfig, prepare_data
from timegrpo.cli import build_parser, main
from timegrpo.cli.bench import configs_from_args
from timegrpo.data.schema import Sample
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.prompts import sample_messages

FRAMES, SIZE, PROMPTS, G, LEN = 4, 56, 2, 2, 4
VISUAL = FRAMES // 2 * (SIZE // 28) ** 2  # 8 merged visual tokens per prompt


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One tiny `timegrpo bench --vs-trl --compare-prefix-off --json --markdown` run: 1 warm-up + 1 timed step per
    trainer (timegrpo with the prompt prefix shared, the same not shared, TRL)."""
    tmp = tmp_path_factory.mktemp("bench")
    md = tmp / "BENCH.md"
    argv = ["bench", "--frames", str(FRAMES), "--size", str(SIZE), "--prompts", str(PROMPTS), "--num-generations",
            str(G), "--completion-len", str(LEN), "--steps", "1", "--warmup", "1", "--vs-trl", "--compare-prefix-off",
            "--json", "--markdown", str(md), "--json-out", str(tmp / "out.json"), "--workdir", str(tmp)]
    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(argv)
    assert rc == 0
    return json.loads(out.getvalue()), md, tmp


@pytest.fixture(scope="module")
def expected(tmp_path_factory):
    """What the timed step must hold, worked out here from the processor and the workload's samples, not from
    the bench's records: merged visual tokens and patches per prompt (grid product / merge size squared) and
    the prompt length of each timed prompt for both trainers (chat text tokens with each placeholder replaced
    by its visual tokens)."""
    from PIL import Image

    cfg = BenchConfig(frames=FRAMES, size=SIZE, prompts=PROMPTS, num_generations=G, completion_len=LEN, steps=1,
                      warmup=1)
    samples, _ = prepare_data(cfg, tmp_path_factory.mktemp("expected"))
    _, processor = build_tiny_vlm(cfg.tiny, seed=cfg.seed)
    vp, ip = processor.video_processor, processor.image_processor
    video = vp(videos=[torch.zeros(FRAMES, 3, SIZE, SIZE)], do_sample_frames=False, return_tensors="pt")
    images = ip(images=[Image.new("RGB", (SIZE, SIZE))] * (FRAMES // 2), return_tensors="pt")
    video_patches = int(video["video_grid_thw"].prod(-1).sum())
    image_patches = int(images["image_grid_thw"].prod(-1).sum())
    video_tokens, image_tokens = video_patches // vp.merge_size**2, image_patches // ip.merge_size**2

    def length(messages, placeholders, visual):
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(processor.tokenizer(text)["input_ids"]) - placeholders + visual

    timed = samples[PROMPTS * cfg.warmup:PROMPTS * (cfg.warmup + 1)]  # no shuffling: step k has prompts kP..kP+P-1
    return types.SimpleNamespace(
        video_tokens=video_tokens, image_tokens=image_tokens, video_patches=video_patches,
        image_patches=image_patches,
        timegrpo_prompt_lengths=[length(sample_messages(s, cfg.template), 1, video_tokens) for s in timed],
        trl_prompt_lengths=[length(image_messages(s, cfg.template, FRAMES // 2), FRAMES // 2, image_tokens)
                            for s in timed])


def test_processor_counts_agree_with_the_documented_formula(expected):
    assert expected.video_tokens == expected.image_tokens == VISUAL == BenchConfig(frames=FRAMES, size=SIZE).visual_tokens
    assert expected.video_patches == expected.image_patches == VISUAL * 4


def test_json_has_the_step_fields_and_the_machine(bench_run, expected):
    import transformers
    import trl

    result, _, tmp = bench_run
    for key in ("step_time", "phases", "phase_split", "tokens_per_second", "tokens_per_step", "vision_tower",
                "vision_tower_calls_per_step", "prompts_per_step", "peak_rss_mb", "data_wait_share",
                "data_pipeline", "machine", "model_tflops_per_step"):
        assert key in result, key
    assert set(result["phases"]) == set(PHASES) and set(result["phase_split"]) == set(GROUPS)
    machine = result["machine"]
    assert (machine["cpu_cores"], machine["torch"], machine["transformers"], machine["trl"]) == (
        os.cpu_count(), torch.__version__, transformers.__version__, trl.__version__)
    assert (machine["gpu"] is None) == (not torch.cuda.is_available())
    assert len(machine["load_average"]) == 3 and min(machine["load_average"]) >= 0
    # the figures are the timed step's, not the warm-up step's (which saw other prompts)
    warm, timed = result["per_step"]
    assert result["warmup_step_times"] == [warm["step_time"]] and result["step_times"] == [timed["step_time"]]
    assert result["step_time"] == timed["step_time"] and result["tokens_per_step"] == timed["tokens"]
    assert result["tokens_per_second"] == timed["tokens"] / timed["step_time"]
    # exclusive phases: none negative, the measured ones never add up to more than the step, "other" is the rest
    phases = result["phases"]
    measured = sum(v for p, v in phases.items() if p != "other")
    assert min(phases.values()) >= 0 and measured <= result["step_time"]
    assert phases["other"] == pytest.approx(result["step_time"] - measured)
    ran = [p for p in PHASES if p != "other" and phases[p] <= 0]
    assert not ran, f"phases every step runs (beta 0.04: a reference forward) were not timed: {ran}"
    # tokens of the step: G copies of each timed prompt (lengths worked out from the processor) + the completions
    assert result["completion_len"] == LEN  # fixed length: min = max new tokens
    assert result["prompt_tokens_per_row"] == pytest.approx(np.mean(expected.timegrpo_prompt_lengths))
    assert result["tokens_per_step"] == G * sum(expected.timegrpo_prompt_lengths) + PROMPTS * G * LEN
    assert 0 <= result["data_wait_share"] <= 1 and result["peak_rss_mb"] > 0
    assert json.loads((tmp / "out.json").read_text()) == result


def test_vision_tower_runs_once_per_prompt_in_timegrpo(bench_run, expected):
    result, _, _ = bench_run
    assert result["vision_tower_calls_per_step"] == result["prompts_per_step"] == PROMPTS
    tower = result["vision_tower"]
    assert tower["forwards_per_step"] == 1 and tower["inputs_per_step"] == PROMPTS
    assert tower["patches_per_step"] == PROMPTS * expected.video_patches


def test_trl_sees_the_same_visual_tokens_and_reencodes_them(bench_run, expected):
    result, _, _ = bench_run
    vs = result["vs_trl"]
    assert vs["visual_tokens_per_prompt"] == {"timegrpo": expected.video_tokens, "trl": expected.image_tokens}
    assert result["video_pad_per_prompt"] == expected.video_tokens and result["image_pad_per_prompt"] == 0
    trl = vs["trl"]
    assert trl["image_pad_per_prompt"] == expected.image_tokens and trl["video_pad_per_prompt"] == 0
    assert trl["completion_len"] == LEN
    # same prompts, but as FRAMES/2 images: one <|vision_start|><|vision_end|> pair each instead of one per video
    assert trl["tokens_per_step"] == G * sum(expected.trl_prompt_lengths) + PROMPTS * G * LEN
    # TRL encodes each completion's copy of the images in generation, the reference and the train forward
    images = PROMPTS * G * FRAMES // 2
    assert trl["vision_tower"]["forwards_per_step"] == 3
    assert trl["vision_tower"]["inputs_per_step"] == 3 * images
    assert trl["vision_tower"]["patches_per_step"] == 3 * PROMPTS * G * expected.image_patches
    # the ratios compare the two timed steps (the warm-up steps are left out), from each side's raw records
    ours, theirs = result["per_step"][-1], trl["per_step"][-1]
    assert (vs["timegrpo_step_time"], vs["trl_step_time"]) == (ours["step_time"], theirs["step_time"])
    assert vs["step_time_ratio"] == pytest.approx(ours["step_time"] / theirs["step_time"])
    assert vs["paired_step_time_ratio"] == pytest.approx(vs["step_time_ratio"])  # one pair
    assert vs["tokens_per_second_ratio"] == pytest.approx(
        ours["tokens"] / ours["step_time"] / (theirs["tokens"] / theirs["step_time"]))
    assert vs["target_step_time_ratio"] == 0.7 and vs["target_met"] == (vs["step_time_ratio"] <= 0.7)


def test_language_model_tokens_of_each_forward_with_the_prefix_shared_and_not(bench_run, expected):
    """Tokens the language model computes per step, worked out from the prompt lengths (each micro-batch left-pads
    its prompts to the longest): shared, one prefill of all but the last prompt token per prompt, then every row
    runs the last prompt token and decodes, and each log-prob forward packs one prompt with its G completions;
    not shared (and TRL), every row carries its own prompt."""
    result, _, _ = bench_run
    n, lp, lp_trl = PROMPTS * G, max(expected.timegrpo_prompt_lengths), max(expected.trl_prompt_lengths)
    assert result["share_prompt_prefix"] is True
    assert result["lm_tokens_per_step"] == {"generation": PROMPTS * (lp - 1) + n * LEN,
                                            "logprob": PROMPTS * (lp + G * LEN), "train_forward": PROMPTS * (lp + G * LEN)}
    off = result["prefix_off"]
    assert off["share_prompt_prefix"] is False and off["name"] == "timegrpo (prefix not shared)"
    assert off["lm_tokens_per_step"] == {"generation": n * lp + n * (LEN - 1), "logprob": n * (lp + LEN),
                                         "train_forward": n * (lp + LEN)}
    trl = result["vs_trl"]["trl"]
    assert trl["lm_tokens_per_step"] == {"generation": n * lp_trl + n * (LEN - 1), "logprob": n * (lp_trl + LEN),
                                         "train_forward": n * (lp_trl + LEN)}
    # the same work (prompts, completions, vision) on both timegrpo sides; the ratio is of their timed steps
    assert off["tokens_per_step"] == result["tokens_per_step"]
    for key in ("forwards_per_step", "inputs_per_step", "patches_per_step"):
        assert off["vision_tower"][key] == result["vision_tower"][key]
    sharing = result["prefix_sharing"]
    assert sharing["step_time_ratio"] == pytest.approx(result["step_time"] / off["step_time"])
    assert sharing["lm_tokens_on_off"]["logprob"] == [PROMPTS * (lp + G * LEN), n * (lp + LEN)]
    assert result["computed_tflops_per_step"] < result["model_tflops_per_step"]
    assert off["computed_tflops_per_step"] < off["model_tflops_per_step"] * 1.01


def test_markdown_report_is_written(bench_run):
    result, md, _ = bench_run
    text = md.read_text()
    for heading in ("# Benchmarks", "## Machine", "## Summary", "### Step time by phase", "## Data pipeline",
                    "## GPU: not measured in this run", "## How the comparison is matched",
                    "### timegrpo with the prompt prefix shared", "### Prompt prefix shared vs not shared"):
        assert heading in text, heading
    assert "timegrpo bench --arch qwen2_5_vl_7b --frames 72 --size 280" in text
    assert f"{result['vs_trl']['step_time_ratio']:.3f}" in text


def test_kept_sections_survive_a_regeneration(bench_run, tmp_path):
    """A section measured elsewhere (BENCHMARKS.md's GPU run) stays, once and in place, when the report is rewritten."""
    result, md, _ = bench_run
    block = ("<!-- kept: gpu-run -->\n## GPU: a run made elsewhere\n\n| step (s) |\n|---|\n| 9.724 |\n"
             "<!-- /kept: gpu-run -->")
    path = tmp_path / "BENCH.md"
    path.write_text(md.read_text().replace("## How the comparison", f"{block}\n\n## How the comparison"))
    for _ in range(2):
        write_markdown([result], path, argv=["timegrpo", "bench", "--vs-trl"])
        text = path.read_text()
        assert text.count(block) == 1
        assert text.index("## GPU: not measured in this run") < text.index(block) < text.index("## How the comparison")
    assert "A GPU run made separately" in text
    fresh = write_markdown([result], tmp_path / "fresh.md", argv=["timegrpo", "bench"]).read_text()
    assert "<!-- kept" not in fresh and "A GPU run made separately" not in fresh


def _args(argv):
    args, extra = build_parser().parse_known_args(argv)
    args.overrides = extra
    return args


def test_cli_registers_bench_and_suite_overrides():
    _, configs = configs_from_args(_args(["bench", "--suite", "cpu", "--steps", "2", "--vs-trl"]))
    assert [c.label for c in configs] == ["tiny-demo", "3b-shaped", "3b-shaped-g8"]
    assert all(c.steps == 2 and c.vs_trl for c in configs)
    assert configs[1].arch == "qwen2_5_vl_3b" and configs[0].frames == 16
    _, single = configs_from_args(_args(["bench", "--frames", "8", "--tiny", "qwen2_vl"]))
    assert len(single) == 1 and single[0].frames == 8 and single[0].tiny == "qwen2_vl"
    assert single[0].visual_tokens == 4 * 4


@pytest.mark.parametrize("kwargs, match", [({"frames": 7}, "even"), ({"size": 50}, "multiple of 28"),
                                          ({"num_generations": 1}, "group"), ({"model": "x", "arch": "y"}, "one of")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BenchConfig(**kwargs)


def test_phase_timer_charges_nested_time_to_the_inner_phase(monkeypatch):
    clock = iter([0.0, 1.0, 3.0, 4.0, 10.0, 12.0])  # outer 0..4 holds inner 1..3; then solo 10..12
    monkeypatch.setattr(timing_module, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    timer = PhaseTimer()
    with timer.phase("outer"), timer.phase("inner"):
        pass
    timer.wrap(lambda: None, lambda *a, **k: "solo")()
    assert timer.take() == {"outer": 2.0, "inner": 2.0, "solo": 2.0}


def test_patcher_restores_methods_module_globals_and_call():
    class Proc:
        def __call__(self, x):
            return x + 1

        def method(self):
            return "m"

    proc, timer, patcher = Proc(), PhaseTimer(), Patcher()
    module = types.ModuleType("m")
    module.fn = lambda: "f"
    original_fn = module.fn
    seen = []
    patcher.wrap(proc, "method", timer, "a")
    patcher.wrap(module, "fn", timer, "b")
    patcher.wrap_call(proc, timer, "c", after=seen.append)
    assert (proc.method(), module.fn(), proc(1)) == ("m", "f", 2)
    assert isinstance(proc, Proc) and seen == [2] and set(timer.take()) == {"a", "b", "c"}
    patcher.restore()
    assert type(proc) is Proc and "method" not in proc.__dict__ and module.fn is original_fn


def test_images_for_trl_are_every_other_frame_in_the_videos_place():
    frames = torch.arange(4 * 3 * 28 * 28, dtype=torch.float32).reshape(4, 3, 28, 28) % 256
    images = frames_to_images(frames)
    assert len(images) == 2 and images[0].size == (28, 28)
    assert torch.equal(torch.from_numpy(np.asarray(images[1])).permute(2, 0, 1).float(), frames[2])
    sample = Sample("q1", "v", "/x/v.mp4", 10.0, "the red circle appears", [(1.0, 2.0)])
    messages = image_messages(sample, "no_think", 3)
    user = messages[-1]["content"]
    assert [p["type"] for p in user] == ["text", "image", "image", "image"]
    assert "the red circle appears" in user[0]["text"]


def test_published_architectures_have_the_published_sizes():
    counts = parameter_counts(ARCHS.get("qwen2_5_vl_3b"))
    assert counts["total"] == pytest.approx(3.75e9, rel=0.01)  # Qwen2.5-VL-3B: 3.75B parameters
    assert counts["vision"] == pytest.approx(0.669e9, rel=0.01)
    seven = ARCHS.get("qwen2_5_vl_7b")
    assert (seven.hidden_size, seven.num_hidden_layers, seven.vocab_size, seven.tie_word_embeddings) == (
        3584, 28, 152064, False)


def test_a_heavily_shrunk_3b_builds_and_loads(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    shapes = shrink(ARCHS.get("qwen2_5_vl_3b"), layers=1, heads_divisor=16, vocab_size=1024)
    path = save_arch_model(shapes, tmp_path / "m")
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    cfg = model.config
    assert (cfg.text_config.hidden_size, cfg.text_config.num_attention_heads, cfg.vision_config.depth) == (128, 1, 1)
    assert cfg.text_config.rope_parameters["mrope_section"] == [16, 24, 24]  # head size kept: 128
    assert cfg.video_token_id == processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")


def test_cached_frames_equal_decoded_ones(tmp_path):
    from timegrpo.data.synthetic import SynthConfig, generate, load_split
    from timegrpo.data.video import VideoSampling

    generate(SynthConfig(n=1, val_size=0, test_size=0, min_duration=3, max_duration=3), tmp_path / "s")
    video = load_split(tmp_path / "s")[0].video
    row = measure_video(video, VideoSampling(fps=2.0, min_pixels=3136, max_pixels=3136, total_pixels=None),
                        tmp_path / "cache", repeats=2)
    assert (row["frames"], row["height"], row["width"], row["visual_tokens"]) == (6, 56, 56, 12)
    assert row["cache_entry_kb"] > 0 and row["speedup"] == pytest.approx(row["cold_s"] / row["cached_s"])


def test_real_video_at_time_r1_settings(shared_data, tmp_path):
    """charades.mp4 (460 frames, 14.99 fps, 30.7 s): 2 fps gives 60 frames within Time-R1's pixel budget."""
    from timegrpo.bench.pipeline import time_r1_sampling

    path = shared_data / "videos" / "charades.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    row = measure_video(path, time_r1_sampling(), tmp_path / "cache", repeats=1)
    assert row["frames"] == 60 and row["visual_tokens"] <= 3584
    assert row["height"] % 28 == 0 and row["width"] % 28 == 0


def test_sequential_run_without_reference(tmp_path):
    """--sequential (timegrpo's steps, then TRL's), --beta 0 (no reference forward), gradient checkpointing."""
    argv = ["bench", "--frames", str(FRAMES), "--prompts", "1", "--num-generations", str(G), "--completion-len",
            str(LEN), "--steps", "1", "--warmup", "1", "--beta", "0", "--gradient-checkpointing", "--vs-trl",
            "--sequential", "--compare-prefix-off", "--json", "--workdir", str(tmp_path)]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(argv) == 0
    result = json.loads(out.getvalue())
    trl = result["vs_trl"]["trl"]
    assert result["phases"]["logprob"] == 0 and trl["phases"]["logprob"] == 0
    assert result["lm_tokens_per_step"]["logprob"] == result["prefix_off"]["lm_tokens_per_step"]["logprob"] == 0
    assert 0 < result["lm_tokens_per_step"]["train_forward"] < result["prefix_off"]["lm_tokens_per_step"]["train_forward"]
    assert result["vision_tower"]["forwards_per_step"] == 1
    assert trl["vision_tower"]["forwards_per_step"] == 2  # generation + train forward, no reference
    assert result["vs_trl"]["visual_tokens_per_prompt"] == {"timegrpo": VISUAL, "trl": VISUAL}
    assert result["config"]["sequential"] and result["config"]["gradient_checkpointing"]
