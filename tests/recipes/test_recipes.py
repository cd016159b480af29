"""Every recipe loads through load_recipe, states its own launch line, and keeps the SPEC's numbers."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from timegrpo.config import load_recipe, save_config

REPO = Path(__file__).resolve().parents[2]
# recipes/detr/ holds GIRL-DETR configs (timegrpo.detr.config.DetrConfig, same mechanism; tested in tests/detr).
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    names = {p.stem for p in RECIPES}
    assert {"time_r1_qwen2_5_vl_7b", "time_r1_no_think_qwen2_5_vl_7b", "charades_sta_qwen2_5_vl_7b",
            "activitynet_qwen2_5_vl_7b", "video_opd_qwen3_vl_8b"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_round_trips(path, tmp_path):
    cfg = load_recipe(path, [])
    assert load_recipe(save_config(cfg, tmp_path / "resolved.yaml"), []) == cfg


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_first_line_is_the_launch_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), f"{path.name}: the first line must be '# <launch command>'"
    argv = shlex.split(first[2:])
    rel = path.relative_to(REPO).as_posix()
    assert argv[argv.index("--config") + 1] == rel, f"{path.name}: launch line must pass --config {rel}"
    if argv[:2] == ["accelerate", "launch"]:
        from accelerate.commands.launch import _validate_launch_command, launch_command_parser

        at = argv.index("--config_file") + 1
        assert (REPO / argv[at]).is_file(), f"{path.name}: {argv[at]} does not exist"
        argv[at] = str(REPO / argv[at])
        args = launch_command_parser().parse_args(argv[2:])
        args, _, _ = _validate_launch_command(args)
        assert args.module and args.training_script == "timegrpo.train"
        assert args.training_script_args[:2] == ["--config", rel]
    else:
        assert argv[0] == "timegrpo", f"{path.name}: launch with `accelerate launch` or `timegrpo`"


def test_time_r1_recipe_has_the_papers_hyperparameters():
    cfg = load_recipe(REPO / "recipes/time_r1_qwen2_5_vl_7b.yaml", [])
    m, d, t = cfg.model, cfg.data, cfg.train
    assert m.model_name_or_path == "Qwen/Qwen2.5-VL-7B-Instruct" and m.gradient_checkpointing
    assert m.freeze_vision_tower and m.train_merger and not m.use_lora
    assert (d.fps, d.total_pixels, d.min_pixels, d.max_frames) == (2.0, 3584 * 28 * 28, 16 * 28 * 28, 768)
    assert d.prompt_template == "think"
    assert (t.learning_rate, t.lr_scheduler_type, t.beta, t.num_generations) == (1e-6, "linear", 0.04, 8)
    assert (t.max_completion_length, t.per_device_train_batch_size, t.gradient_accumulation_steps) == (200, 1, 2)
    assert (t.num_train_epochs, t.bf16, t.temperature, t.epsilon) == (5.0, True, 1.0, 0.2)
    assert (t.loss_type, t.kl_estimator, t.scale_rewards) == ("bnpo", "k3", "group")
    assert (t.advantage_std_eps, t.advantage_unbiased_std) == (1e-4, True)
    assert t.reward_funcs == ["tiou", "format"] and t.reward_weights == [1.0, 1.0]


@pytest.mark.parametrize("name", ["charades_sta_qwen2_5_vl_7b", "activitynet_qwen2_5_vl_7b"])
def test_dataset_finetuning_recipes(name):
    t = load_recipe(REPO / f"recipes/{name}.yaml", []).train
    assert (t.beta, t.max_completion_length, t.num_train_epochs) == (0.0, 1024, 2.0)
    assert t.reward_funcs == ["iou", "format"]


def test_no_think_and_opd_recipes():
    nt = load_recipe(REPO / "recipes/time_r1_no_think_qwen2_5_vl_7b.yaml", [])
    assert nt.data.prompt_template == "no_think" and nt.train.reward_funcs == ["tiou", "answer_format"]
    opd = load_recipe(REPO / "recipes/video_opd_qwen3_vl_8b.yaml", [])
    assert opd.method == "opd" and opd.objective == "opd" and opd.train.teacher_model_name_or_path
    assert (opd.train.num_generations, opd.train.beta, opd.train.lr_scheduler_type) == (1, 0.0, "constant")
    assert (opd.train.opd_ratio_clip, opd.train.opd_reward_clamp) == (None, None)  # off by default, as the paper


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_names_resolve_in_the_registries(path):
    """Reward, prompt and format names are checked against the modules that own them."""
    from timegrpo import prompts, rewards
    from timegrpo.data import formats

    cfg = load_recipe(path, [])
    for name in cfg.train.reward_funcs:
        assert name in rewards.reward_names(), f"{path.name}: unknown reward {name!r}"
    assert cfg.data.prompt_template in prompts.TEMPLATES, f"{path.name}: unknown prompt {cfg.data.prompt_template!r}"
    assert cfg.data.format is None or cfg.data.format in formats.READERS


def test_timerft_recipe_is_time_r1_in_five_rounds_of_2500():
    base = load_recipe(REPO / "recipes/time_r1_qwen2_5_vl_7b.yaml", [])
    cfg = load_recipe(REPO / "recipes/time_r1_timerft_qwen2_5_vl_7b.yaml", [])
    c = cfg.curriculum
    assert (c.strategy, c.rounds, c.k, c.epochs_per_round) == ("timerft", 5, 2500, 1.0)
    assert (c.score_n, c.score_do_sample, c.score_max_new_tokens) == (1, False, 1024)
    assert c.launch.startswith("accelerate launch --config_file launch/zero3_offload.yaml")
    same = ("learning_rate", "lr_scheduler_type", "beta", "num_generations", "max_completion_length", "loss_type",
            "per_device_train_batch_size", "gradient_accumulation_steps", "temperature", "reward_funcs", "bf16")
    assert all(getattr(cfg.train, f) == getattr(base.train, f) for f in same)
    assert cfg.model == base.model and not cfg.masking.on


def test_videotg_recipe_is_the_grpo_core_with_curriculum_masking():
    cfg = load_recipe(REPO / "recipes/videotg_r1_qwen2_5_vl_7b.yaml", [])
    t, m = cfg.train, cfg.masking
    assert (t.num_generations, t.learning_rate, t.beta, t.temperature) == (8, 1e-6, 0.04, 1.0)
    assert t.reward_funcs == ["iou", "format"] and t.reward_weights == [1.0, 1.0]
    assert (m.max_fraction, m.until, m.order, m.buckets) == (0.8, 0.5, "farthest", ["hard"])
    header = (REPO / "recipes/videotg_r1_qwen2_5_vl_7b.yaml").read_text().split("\nmethod:")[0]
    stages = [header.index(f"timegrpo curriculum {s}") for s in ("score", "reflect", "select --method dea_stratified")]
    assert stages == sorted(stages) and cfg.data.train_file in header  # the chain ends in this recipe's data


def test_tvdf_recipe_is_video_opd_in_three_rounds():
    base = load_recipe(REPO / "recipes/video_opd_qwen3_vl_8b.yaml", [])
    cfg = load_recipe(REPO / "recipes/video_opd_tvdf_qwen3_vl_8b.yaml", [])
    c = cfg.curriculum
    assert (c.strategy, c.rounds, c.k, c.teacher_n, c.score_do_sample) == ("tvdf", 3, 2500, 4, True)
    assert cfg.method == "opd" and cfg.model == base.model
    assert cfg.train.teacher_model_name_or_path == base.train.teacher_model_name_or_path
    assert (cfg.train.num_generations, cfg.train.learning_rate, cfg.train.lr_scheduler_type) == (1, 1e-6, "constant")
