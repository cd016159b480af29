"""SFT on the shared loop: its loss is the language-modelling loss of the model itself, it honours its section
(schedule, warm-up), resumes exactly, and is invariant to the process layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from timegrpo.config import load_recipe
from timegrpo.data.source import video_source
from timegrpo.data.synthetic import load_split, recommended_sampling
from timegrpo.models.loading import prepare_policy
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.prompts import prompt_inputs, sft_target
from timegrpo.trainer.sft import SFTTrainer

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"
# 8 samples, 3 per micro-batch: epochs of 3 micro-batches, the last one short
FAST = ["--sft.per_device_train_batch_size", "3", "--sft.save_steps", "0", "--sft.logging_steps", "1",
        "--sft.lr_scheduler_type", "linear", "--sft.warmup_ratio", "0.5", "--sft.learning_rate", "1e-3"]


def make_sft(synth_dir, out, *overrides, seed=0):
    cfg = load_recipe(RECIPE, [*FAST, "--sft.output_dir", str(out), *overrides])
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=seed)
    model = prepare_policy(model)
    return SFTTrainer(cfg, model, processor, load_split(synth_dir, "train"), video_source(recommended_sampling()))


def params_of(trainer):
    return {n: p.detach().clone() for n, p in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}


@pytest.mark.parametrize("completion_only", [True, False])
def test_loss_is_the_models_own_lm_loss(synth_dir, tmp_path, completion_only):
    """The SFT loss equals the model's built-in cross-entropy with ``labels`` on the counted tokens: the target
    (+ EOS) only, or every text token after the first real one (no padding, no video placeholders)."""
    trainer = make_sft(synth_dir, tmp_path, "--sft.completion_only_loss", str(completion_only).lower())
    samples = trainer.samples[:2]
    model, processor = trainer.model, trainer.processor
    got = trainer.loss(samples)

    inputs = prompt_inputs(processor, samples, trainer.videos, trainer.template)
    tok = processor.tokenizer
    targets = [tok(sft_target(s, trainer.template), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
               for s in samples]
    width = max(map(len, targets))
    ids, mask, labels = [], [], []
    for p, t in enumerate(targets):
        prompt_ids, prompt_mask = inputs["input_ids"][p], inputs["attention_mask"][p]
        pad = width - len(t)
        ids.append(torch.cat([prompt_ids, torch.tensor(t + [tok.pad_token_id] * pad)]))
        mask.append(torch.cat([prompt_mask, torch.tensor([1] * len(t) + [0] * pad)]))
        prompt_labels = prompt_ids.clone()
        prompt_labels[(prompt_mask == 0) | (inputs["mm_token_type_ids"][p] != 0)] = -100
        prompt_labels[int(prompt_mask.argmax())] = -100  # the first real token has nothing before it
        if completion_only:
            prompt_labels[:] = -100
        labels.append(torch.cat([prompt_labels, torch.tensor(t + [-100] * pad)]))
    types = torch.cat([inputs["mm_token_type_ids"], torch.zeros(len(samples), width, dtype=torch.long)], dim=1)
    with torch.no_grad():
        want = model(input_ids=torch.stack(ids), attention_mask=torch.stack(mask), mm_token_type_ids=types,
                     pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"],
                     second_per_grid_ts=inputs["second_per_grid_ts"], labels=torch.stack(labels)).loss
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-5)


def test_section_schedule_and_epochs(synth_dir, tmp_path):
    """Linear schedule with warm-up from the sft section; epochs of ceil(8 / 3) = 3 micro-batches."""
    trainer = make_sft(synth_dir, tmp_path, "--sft.num_train_epochs", "2", "--sft.max_steps", "-1")
    assert trainer.total_steps == 6
    assert [len(p) for s in range(4) for p in trainer.step_positions(s)] == [3, 3, 2, 3]
    history = trainer.train(progress=False)
    lrs = [m["learning_rate"] for m in history]
    assert lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 2e-3 / 3, 1e-3 / 3, 0.0])
    assert history[-1]["loss"] < history[0]["loss"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    assert (tmp_path / "checkpoint-6" / "state").is_dir()


def test_resume_reaches_the_same_parameters(synth_dir, tmp_path):
    common = ["--sft.max_steps", "4", "--sft.gradient_accumulation_steps", "2"]
    full = make_sft(synth_dir, tmp_path / "full", *common)
    full.train(progress=False)
    target = params_of(full)

    first = make_sft(synth_dir, tmp_path / "cut", *common, "--sft.save_steps", "2")
    first.train_step()
    first.train_step()
    ckpt = first.save_checkpoint()
    del first  # the run is "killed" after its step-2 checkpoint

    resumed = make_sft(synth_dir, tmp_path / "cut", *common, seed=123)  # other init weights
    resumed.load_checkpoint(ckpt)
    assert resumed.state["step"] == 2
    resumed.train(progress=False)
    got = params_of(resumed)
    for name, value in target.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    assert [m["learning_rate"] for m in resumed.history] == [m["learning_rate"] for m in full.history[2:]]


def test_two_processes_equal_one_process_with_twice_the_accumulation(two_layouts):
    """torchrun --nproc_per_node 2 == 1 process x accum 2, learning-rate schedule included (Accelerate steps a
    prepared scheduler once per process: the loop stretches the schedule to match)."""
    common = ["--sft.per_device_train_batch_size", "1", "--sft.max_steps", "3", "--sft.lr_scheduler_type", "linear",
              "--sft.warmup_ratio", "0.4", "--sft.learning_rate", "1e-3", "--sft.save_steps", "0"]
    one, r0 = two_layouts("sft", *common)  # same parameters on both ranks and in both layouts
    assert [a["learning_rate"] for a in one["history"]] == [b["learning_rate"] for b in r0["history"]] == [5e-4, 1e-3, 0]
    for a, b in zip(one["history"], r0["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
