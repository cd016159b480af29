"""The objective fields of the recipe (issue 15): method -> objective, importance level, KL bias correction, SAPO."""

from __future__ import annotations

from pathlib import Path

import pytest

from timegrpo.algos.losses import OBJECTIVES, LossSettings
from timegrpo.config import ConfigError, RecipeConfig, RLConfig, load_recipe
from timegrpo.config.recipe import METHOD_OBJECTIVES

REPO = Path(__file__).resolve().parents[2]


def test_every_method_names_a_registered_objective():
    assert set(METHOD_OBJECTIVES.values()) <= set(OBJECTIVES.names())
    for method, objective in METHOD_OBJECTIVES.items():
        extra = ["--num_generations", "1", "--teacher_model_name_or_path", "/t"] if method == "opd" else []
        assert load_recipe(None, ["--method", method, *extra]).objective == objective


def test_defaults_leave_existing_recipes_unchanged():
    t = RLConfig()
    assert (t.importance_sampling_level, t.use_bias_correction_kl) == (None, False)
    s = LossSettings.from_recipe(RecipeConfig())
    assert (s.objective, s.importance_sampling_level, s.use_bias_correction_kl) == ("clipped", None, False)


def test_loss_settings_carry_the_new_fields():
    cfg = load_recipe(None, ["--method", "sapo", "--sapo_temperature_pos", "2", "--sapo_temperature_neg", "0.5",
                             "--importance_sampling_level", "sequence", "--use_bias_correction_kl", "true"])
    s = LossSettings.from_recipe(cfg)
    assert (s.objective, s.sapo_temperature_pos, s.sapo_temperature_neg) == ("sapo", 2.0, 0.5)
    assert (s.importance_sampling_level, s.use_bias_correction_kl) == ("sequence", True)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["--importance_sampling_level", "batch"], "train.importance_sampling_level: 'batch' is not one of sequence, token"),
        (["--sapo_temperature_neg", "0"], "train.sapo_temperature_neg: must be > 0"),
        (["--loss_type", "cispo"], "train.loss_type: TRL's loss_type 'cispo' is an objective here: set method: cispo "
                                   "and loss_type: dapo"),
        (["--method", "gspo", "--importance_sampling_level", "token"],
         "train.importance_sampling_level: method 'gspo' is defined at level 'sequence' only"),
        (["--method", "opd", "--num_generations", "1", "--teacher_model_name_or_path", "/t",
          "--importance_sampling_level", "sequence"], "method 'opd' is defined at level 'token' only"),
    ],
)
def test_validation_names_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(None, overrides)


def test_gspo_accepts_its_own_level_spelled_out():
    assert load_recipe(None, ["--method", "gspo", "--importance_sampling_level", "sequence"]).objective == "gspo"


@pytest.mark.parametrize(
    "name,method,loss_type,settings",
    [
        ("gspo", "gspo", "grpo", {"epsilon": 3e-4, "epsilon_high": 4e-4, "beta": 0.0}),
        ("cispo", "cispo", "dapo", {"epsilon_high": 4.0, "beta": 0.0}),
        ("sapo", "sapo", "grpo", {"sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05, "beta": 0.04}),
    ],
)
def test_method_recipes_keep_the_papers_settings(name, method, loss_type, settings):
    cfg = load_recipe(REPO / f"recipes/{name}_time_r1_qwen2_5_vl_7b.yaml", [])
    base = load_recipe(REPO / "recipes/time_r1_qwen2_5_vl_7b.yaml", [])
    t = cfg.train
    assert (cfg.method, t.loss_type, t.num_iterations) == (method, loss_type, 2)
    assert {k: getattr(t, k) for k in settings} == settings
    assert (cfg.model, cfg.data) == (base.model, base.data)  # the Time-R1 setting otherwise
