"""Video-OPD's guards: one completion per prompt, a teacher that shares the student's tokenizer, and a teacher
prepared (frozen, on the device) beside the policy in one process. The DeepSpeed and DDP launches with a teacher
are in ``test_deepspeed.py``."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
import torch

from timegrpo.cli import main
from timegrpo.config import ConfigError, DataConfig, ModelConfig, RecipeConfig, RLConfig, load_recipe
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import check_same_tokenizer, tokenizer_mismatches
from timegrpo.models.tiny import build_tiny_vlm, save_tiny_vlm
from timegrpo.trainer.grpo import GRPOTrainer

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml")
OPD = ["--method", "opd", "--train.teacher_model_name_or_path", "/t"]


@pytest.mark.parametrize("g", [2, 8])
def test_opd_takes_one_completion_per_prompt(g):
    """G != 1 is refused, naming the field and why; G = 1 (and the recipe default 8 left as is) as said."""
    with pytest.raises(ConfigError, match=rf"train.num_generations: must be 1 for method: opd, got {g}: Video-OPD "
                                          "samples one completion per prompt"):
        RecipeConfig(method="opd", train=RLConfig(num_generations=g, teacher_model_name_or_path="/t"))
    with pytest.raises(ConfigError, match="train.num_generations: must be 1 for method: opd, got 8"):
        load_recipe(None, OPD)  # the default G of 8 is GRPO's: an OPD recipe must say 1
    cfg = load_recipe(None, [*OPD, "--train.num_generations", "1"])
    assert (cfg.method, cfg.train.num_generations) == ("opd", 1)
    with pytest.raises(ConfigError, match="train.num_generations: must be >= 2 for method 'grpo'"):
        RecipeConfig(method="grpo", train=RLConfig(num_generations=1))


def test_tokenizer_check_compares_values_and_names_both_models():
    """Same tokenizer (other weights): nothing to report. Another corpus: other vocabulary. Qwen3-VL's tiny
    processor has the same tokens but 16-pixel patches, which the teacher's vision tower could not read."""
    _, student = build_tiny_vlm("qwen2_5_vl", seed=0)
    _, same = build_tiny_vlm("qwen2_5_vl", seed=1)
    _, other = build_tiny_vlm("qwen2_5_vl", corpus=["zebra giraffe hippopotamus " * 3, "quokka wombat"])
    _, qwen3 = build_tiny_vlm("qwen3_vl")
    assert same is not student and tokenizer_mismatches(student, same) == []
    check_same_tokenizer(student, same, student_name="s", teacher_name="t")

    (vocab,) = tokenizer_mismatches(student, other)
    n_s, n_o = len(student.tokenizer.get_vocab()), len(other.tokenizer.get_vocab())
    assert n_s != n_o and vocab.startswith(f"vocabulary: {n_s} vs {n_o} tokens")
    with pytest.raises(ConfigError, match=r"train.teacher_model_name_or_path: the teacher 'big/teacher' does not "
                                          r"share the tokenizer of the student 'small/student' \(vocabulary"):
        check_same_tokenizer(student, other, student_name="small/student", teacher_name="big/teacher")

    assert tokenizer_mismatches(student, qwen3) == ["video processor: patch_size 14 vs 16"]
    eos = copy.deepcopy(student)
    eos.tokenizer.eos_token = "<|endoftext|>"
    assert tokenizer_mismatches(student, eos) == ["special tokens: eos_token '<|im_end|>' vs '<|endoftext|>'"]


def test_train_refuses_a_teacher_with_another_tokenizer(synth_dir, tmp_path, capsys):
    """``timegrpo train --method opd`` stops on one line naming both folders, before the teacher's weights load."""
    student = save_tiny_vlm("qwen2_5_vl", tmp_path / "student")
    teacher = save_tiny_vlm("qwen2_5_vl", tmp_path / "teacher", corpus=["zebra giraffe hippopotamus quokka"])
    (teacher / "model.safetensors").unlink()  # never read: the check runs on the processor first
    rc = main(["train", "--config", RECIPE, "--model.model_name_or_path", str(student),
               "--data.train_file", str(synth_dir / "train.jsonl"), "--data.video_dir", str(synth_dir),
               "--method", "opd", "--train.num_generations", "1", "--train.teacher_model_name_or_path", str(teacher),
               "--train.output_dir", str(tmp_path / "out"), "--train.max_steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert f"the teacher '{teacher}' does not share the tokenizer of the student '{student}' (vocabulary" in err


def _opd_trainer(synth_dir, tmp_path, teacher=None):
    """A one-process OPD trainer on the tiny student (``teacher``: None = a copy of the student)."""
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    cfg = RecipeConfig(
        method="opd", model=ModelConfig(model_name_or_path="tiny", torch_dtype="float32"),
        data=DataConfig(prompt_template="short_think", min_pixels=3136, max_pixels=3136, total_pixels=None),
        train=RLConfig(num_generations=1, teacher_model_name_or_path="tiny-teacher", per_device_train_batch_size=2,
                       max_completion_length=6, learning_rate=1e-2, lr_scheduler_type="constant", max_steps=1,
                       output_dir=str(tmp_path / "out"), save_steps=0, loss_type="dapo", seed=0))
    videos = video_source(recommended_sampling(), cache_dir=str(tmp_path / "frames"))
    return GRPOTrainer(cfg, model, processor, load_split(synth_dir, "train"), videos,
                       teacher=copy.deepcopy(model) if teacher is None else teacher)


def test_teacher_is_prepared_frozen_and_scores_the_students_tokens(synth_dir, tmp_path, caplog):
    """One process: the teacher is frozen, in eval mode, on the policy's device (logged as the launches log it).
    A teacher equal to the student gives r_t = 0 on every token: loss 0 and no weight moves (AdamW with zero
    gradients); another teacher gives r_t != 0 and the weights move."""
    with caplog.at_level(logging.INFO, logger="timegrpo.trainer.launch"):
        same = _opd_trainer(synth_dir, tmp_path / "same")
    total = sum(p.numel() for p in same.teacher.parameters())
    assert f"teacher: on cpu, process 0 holds {total} of {total} weights" in caplog.text
    assert not same.teacher.training and not any(p.requires_grad for p in same.teacher.parameters())
    assert same.teacher is not same.model
    before = {k: v.clone() for k, v in same.model.state_dict().items()}
    m = same.train_step()
    assert m["opd/reward_mean"] == 0.0 and m["loss"] == 0.0
    assert all(torch.equal(v, same.model.state_dict()[k]) for k, v in before.items())

    other, _ = build_tiny_vlm("qwen2_5_vl", seed=1)
    diff = _opd_trainer(synth_dir, tmp_path / "other", other)
    m = diff.train_step()
    assert m["opd/reward_mean"] != 0.0 and m["loss"] == pytest.approx(-m["opd/reward_mean"], rel=1e-5)
    assert any(not torch.equal(v, diff.model.state_dict()[k]) for k, v in before.items())
    assert json.dumps(m)  # every metric is a plain number
    assert "frac_reward_zero_std" not in m and "reward_std" not in m  # group statistics mean nothing with G 1
