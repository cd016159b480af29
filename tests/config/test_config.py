"""Config tree: round trip, overrides, type coercion, error messages, validation."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from timegrpo.algos.losses import LossSettings
from timegrpo.config import (
    ConfigError,
    RecipeConfig,
    RLConfig,
    coerce_value,
    format_help,
    load_recipe,
    parse_overrides,
    recipe_from_dict,
    save_config,
    to_dict,
    to_yaml,
)
from timegrpo.config.core import sections_of

SECTIONS = sections_of(RecipeConfig)


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


RECIPE = """\
# a comment line
method: grpo
model:
  model_name_or_path: Qwen/Qwen2.5-VL-3B-Instruct
  gradient_checkpointing: true
data:
  train_file: /data/train.json
  total_pixels: 3584*28*28
train:
  learning_rate: 1e-6          # YAML alone would read this as a string
  beta: 0.04
  reward_funcs: [tiou, format]
  reward_weights: [1, 0.5]
  loss_type: bnpo
sft:
  max_steps: 100
"""


def test_recipe_values_are_typed(tmp_path):
    cfg = load_recipe(write(tmp_path, RECIPE), [])
    assert cfg.model.model_name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct" and cfg.model.gradient_checkpointing is True
    assert cfg.data.total_pixels == 2809856 and cfg.data.fps == 2.0
    assert cfg.train.learning_rate == 1e-6 and isinstance(cfg.train.learning_rate, float)
    assert cfg.train.reward_weights == [1.0, 0.5] and isinstance(cfg.train.reward_weights[0], float)
    assert cfg.sft.max_steps == 100 and cfg.train.max_steps == -1


def test_round_trip_through_yaml(tmp_path):
    cfg = load_recipe(write(tmp_path, RECIPE), ["--use_lora", "--train.epsilon_high", "0.28", "--method", "grpo"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml", header="resolved config of run X")
    assert path.read_text().startswith("# resolved config of run X\nmethod: grpo\n")
    again = load_recipe(path, [])
    assert again == cfg
    assert recipe_from_dict(yaml.safe_load(to_yaml(cfg))) == cfg
    assert list(to_dict(cfg)) == ["method", "model", "data", "train", "sft", "masking", "curriculum"]
    assert load_recipe(None, []) == RecipeConfig()


def test_overrides_qualified_bare_equals_and_flags(tmp_path):
    cfg = load_recipe(
        write(tmp_path, RECIPE),
        ["--train.beta", "0", "--temperature=0.7", "--reward_funcs", "iou,format", "--reward_weights", "none",
         "--use_lora", "--model.freeze_vision_tower", "false", "--max_completion_length", "1024",
         "--data.nframes", "16", "--train.hub_model_id", "null", "--train.max-steps", "3"],
    )
    assert cfg.train.beta == 0.0 and cfg.train.temperature == 0.7
    assert cfg.train.reward_funcs == ["iou", "format"] and cfg.train.reward_weights is None
    assert cfg.model.use_lora is True and cfg.model.freeze_vision_tower is False
    assert cfg.train.max_completion_length == 1024 and cfg.data.nframes == 16 and cfg.train.max_steps == 3
    assert cfg.train.loss_type == "bnpo"  # untouched recipe value survives
    later_wins = load_recipe(None, ["--beta", "0.1", "--train.beta", "0.2"])
    assert later_wins.train.beta == 0.2


def test_ambiguous_bare_key_needs_a_section_or_a_preference():
    with pytest.raises(ConfigError, match="--learning_rate is ambiguous: say which with --train.learning_rate or "
                                          "--sft.learning_rate"):
        load_recipe(None, ["--learning_rate", "1e-5"])
    cfg = load_recipe(None, ["--learning_rate", "1e-5"], prefer_section="sft")
    assert cfg.sft.learning_rate == 1e-5 and cfg.train.learning_rate == 1e-6
    assert parse_overrides(RecipeConfig, ["--seed", "3"], prefer_section="train") == [("train.seed", "3")]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["--betta", "0"], r"unknown option --betta; did you mean --beta"),
        (["--train.lr", "1"], r"unknown option --train.lr"),
        (["--model.beta", "0"], r"unknown option --model.beta; did you mean .*--train.beta"),
        (["beta", "0"], r"expected an option like --section.key VALUE, got 'beta'"),
        (["--beta"], r"option --train.beta needs a value \(float\)"),
        (["--beta", "high"], r"--train.beta: expected a number, got 'high'"),
        (["--num_generations", "2.5"], r"--train.num_generations: expected an integer, got '2.5'"),
        (["--use_lora", "maybe"], r"--model.use_lora: expected true or false, got 'maybe'"),
        (["--reward_weights", "1,x"], r"--train.reward_weights\[1\]: expected a number, got 'x'"),
        (["--output_dir", "x"], r"option --output_dir is ambiguous"),
        (["--train.output_dir", "none", "--beta", "-1"], r"train.beta: must be >= 0, got -1.0"),
    ],
)
def test_override_errors_are_clear(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(None, overrides)


def test_recipe_errors_name_the_file_and_key(tmp_path):
    bad_key = write(tmp_path, "train:\n  betaa: 0.1\n", "bad_key.yaml")
    with pytest.raises(ConfigError, match=r"bad_key.yaml: unknown key train.betaa; did you mean train.beta"):
        load_recipe(bad_key, [])
    bad_section = write(tmp_path, "trian:\n  beta: 0.1\n", "bad_section.yaml")
    with pytest.raises(ConfigError, match=r"unknown section 'trian'; did you mean 'train'\? \(known: method, model, data, train, sft, masking, curriculum\)"):
        load_recipe(bad_section, [])
    bad_type = write(tmp_path, "train:\n  num_generations: eight\n", "bad_type.yaml")
    with pytest.raises(ConfigError, match=r"bad_type.yaml: train.num_generations: expected an integer, got 'eight'"):
        load_recipe(bad_type, [])
    bad_value = write(tmp_path, "train:\n  epsilon: 1.5\n", "bad_value.yaml")
    with pytest.raises(ConfigError, match=r"train.epsilon: must be in \(0, 1\), got 1.5 \(in recipe .*bad_value.yaml\)"):
        load_recipe(bad_value, [])
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml", [])
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n", "list.yaml"), [])


def test_coercion_table():
    assert coerce_value("3584*28*28", int, "x") == 2809856
    assert coerce_value(" -1 ", int, "x") == -1
    assert coerce_value(8.0, int, "x") == 8
    assert coerce_value("1e-6", float, "x") == 1e-6
    assert coerce_value(3, float, "x") == 3.0 and isinstance(coerce_value(3, float, "x"), float)
    assert coerce_value("YES", bool, "x") is True and coerce_value("0", bool, "x") is False
    assert coerce_value("[tiou, format]", list[str], "x") == ["tiou", "format"]
    assert coerce_value("", list[str], "x") == []
    assert coerce_value("~", int | None, "x") is None and coerce_value("none", str, "x") == "none"
    for value, tp in [(True, int), (1, bool), (1.5, int), (None, float), (3, str), ("a", list[int] | None)]:
        with pytest.raises(ConfigError):
            coerce_value(value, tp, "x")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"loss_type": "vespo"}, "train.loss_type: 'vespo' is not one of bnpo, dapo, dr_grpo, grpo"),
        ({"kl_estimator": "k9"}, "train.kl_estimator: 'k9' is not one of k1, k2, k3"),
        ({"scale_rewards": "std"}, "TRL's true = group, false = none"),
        ({"advantage_estimator": "dr_grpo"}, "set scale_rewards: none"),
        ({"reward_funcs": ["tiou"], "reward_weights": [1.0, 1.0]}, "has 2 weights for 1 reward_funcs"),
        ({"reward_funcs": []}, "needs at least one reward function"),
        ({"top_p": 0.0}, r"train.top_p: must be in \(0, 1\]"),
        ({"num_iterations": 0}, "train.num_iterations: must be >= 1"),
        ({"lr_scheduler_type": "cosine_with_min_lr"}, "train.lr_scheduler_type"),
        ({"report_to": "tensorboard"}, "'tensorboard' is not one of wandb, none"),
        ({"push_to_hub": True}, "train.hub_model_id: is required with push_to_hub"),
        ({"opd_ratio_clip": 1.5}, "train.opd_ratio_clip"),
        ({"max_steps": 0}, "must be -1 or >= 1"),
    ],
)
def test_grpo_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RLConfig(**kwargs)


def test_cross_section_validation_and_loss_settings():
    with pytest.raises(ConfigError, match="train.num_generations: must be >= 2 for method 'grpo'"):
        load_recipe(None, ["--num_generations", "1"])
    with pytest.raises(ConfigError, match="train.teacher_model_name_or_path: is required with method: opd"):
        load_recipe(None, ["--method", "opd", "--num_generations", "1"])
    with pytest.raises(ConfigError, match="method: 'ppo' is not one of grpo, gspo, cispo, sapo, opd"):
        load_recipe(None, ["--method", "ppo"])
    opd = load_recipe(None, ["--method", "opd", "--num_generations", "1", "--teacher_model_name_or_path", "/t",
                             "--opd_reward_clamp", "5"])
    settings = LossSettings.from_recipe(opd)
    assert (settings.objective, settings.opd_reward_clamp, settings.loss_type) == ("opd", 5.0, "dapo")
    grpo = load_recipe(None, ["--loss_type", "dr_grpo", "--max_completion_length", "200", "--beta", "0.04"])
    settings = LossSettings.from_recipe(grpo)
    assert (settings.objective, settings.max_completion_length, settings.beta) == ("clipped", 200, 0.04)


@pytest.mark.parametrize(
    "section,kwargs,message",
    [
        ("model", {"torch_dtype": "bf16"}, "model.torch_dtype: 'bf16' is not one of bfloat16, float16, float32, auto"),
        ("model", {"attn_implementation": "flash"}, "model.attn_implementation"),
        ("model", {"use_lora": True, "lora_target_modules": []}, "model.lora_target_modules: must not be empty"),
        ("data", {"on_bad": "ignore"}, "data.on_bad: 'ignore' is not one of error, skip, clip"),
        ("data", {"fps": 0.0}, "data.fps: must be > 0"),
        ("data", {"max_pixels": 100}, r"data.max_pixels: must be >= min_pixels \(12544\), got 100"),
        ("data", {"nframes": 1}, "data.nframes: must be >= 2"),
        ("sft", {"warmup_ratio": 2.0}, r"sft.warmup_ratio: must be in \[0, 1\], got 2.0"),
    ],
)
def test_section_validation(section, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SECTIONS[section](**kwargs)


def test_every_field_has_a_help_string_and_a_default():
    for cls in (RecipeConfig, *SECTIONS.values()):
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("help", "")) > 5, f"{cls.__name__}.{f.name} has no help"
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    text = format_help(RecipeConfig)
    assert "--train.beta (float, default 0.0): KL coefficient" in text
    assert "--sft.learning_rate (float, default 1e-05)" in text


def test_schedulers_are_known_to_transformers():
    from transformers import SchedulerType

    from timegrpo.config.recipe import LR_SCHEDULERS

    assert set(LR_SCHEDULERS) <= {s.value for s in SchedulerType}


def test_data_section_builds_the_video_sampler():
    from timegrpo.config import DataConfig
    from timegrpo.data.video import VideoSampling

    sampling = VideoSampling(**DataConfig().video_sampling_kwargs())
    assert (sampling.fps, sampling.nframes, sampling.total_pixels, sampling.max_frames) == (2.0, None, 2809856, 768)
    fixed = VideoSampling(**DataConfig(nframes=16).video_sampling_kwargs())
    assert (fixed.fps, fixed.nframes) == (None, 16)  # nframes wins over the default fps
