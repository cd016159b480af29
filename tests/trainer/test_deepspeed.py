"""DeepSpeed launches, run as a user runs them, on CPU: DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu``),
2 processes over gloo::

    accelerate launch --config_file launch/zero3.yaml --num_processes 2 --mixed_precision no \\
        -m timegrpo.train --config recipes/tiny_cpu.yaml --model.model_name_or_path TINY ...

pointed at a tiny model and the synthetic videos. Each run must train (kl logged with a reference, the
teacher's reward with OPD), shard its state under ``checkpoint-N/state/`` and leave a ``from_pretrained``
checkpoint equal to what the shards hold. One ZeRO-3 case runs by default (also against one process with
twice the accumulation, and with a warm-up schedule); the other launches (ZeRO-2, LoRA, the OPD teacher under
ZeRO-2, ZeRO-3 and DDP) are marked slow.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed")

from timegrpo.models.tiny import save_tiny_vlm  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RECIPE = REPO / "recipes" / "tiny_cpu.yaml"
SMALL = ["--train.max_steps", "2", "--train.num_generations", "2", "--train.per_device_train_batch_size", "1",
         "--train.max_completion_length", "8", "--train.logging_steps", "1", "--train.save_steps", "0",
         "--train.reward_funcs", "length_reward:length,format", "--train.reward_weights", "1,1"]
#: the frozen-model log line of :func:`timegrpo.trainer.launch.prepare_frozen`
FROZEN = re.compile(r"(reference|teacher): (?:DeepSpeed ZeRO-(\d) evaluation engine|on (\S+)), process 0 holds (\d+) "
                    r"of (\d+)")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny policy and a tiny teacher (other weights, the same tokenizer), saved as checkpoints."""
    root = tmp_path_factory.mktemp("ds_models")
    return save_tiny_vlm("qwen2_5_vl", root / "policy"), save_tiny_vlm("qwen2_5_vl", root / "teacher", seed=1)


def data_args(synth_dir, frames):
    return ["--data.train_file", str(synth_dir / "train.jsonl"), "--data.video_dir", str(synth_dir),
            "--data.frame_cache_dir", str(frames)]


@pytest.fixture
def launch(synth_dir, models, tmp_path, free_port):
    """``launch(config, name, *overrides) -> (metrics rows, log)``: the accelerate launch above, output in
    ``tmp_path / name``."""

    def run(config, name, *overrides):
        out = tmp_path / name
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(REPO / "launch" / config),
               "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(free_port()),
               "-m", "timegrpo.train", "--config", str(RECIPE), "--model.model_name_or_path", str(models[0]),
               *data_args(synth_dir, tmp_path / "frames"), "--train.output_dir", str(out), *SMALL, *overrides]
        path = os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": path}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-6000:]
        return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()], log

    return run


def pretrained_weights(folder):
    """The state dict ``from_pretrained`` loads from ``folder``; no key may be missing or unexpected."""
    from transformers import AutoModelForImageTextToText

    model, info = AutoModelForImageTextToText.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.state_dict()


def shard_weights(checkpoint, stage):
    """The fp32 weights the ZeRO shards under ``checkpoint/state`` hold, consolidated by DeepSpeed's own
    ``zero_to_fp32``, after checking that every process wrote its shard."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    shards = checkpoint / "state" / "pytorch_model"
    names = {p.name for p in shards.iterdir()}
    assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= names, names
    if stage == 3:
        assert {f"zero_pp_rank_{r}_mp_rank_00_model_states.pt" for r in (0, 1)} <= names, names
    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint / "state"), tag="pytorch_model")


def lora_merged(shards, base, run_dir):
    """peft's own ``merge_and_unload`` of the adapter and merger held by the shards, on the base model."""
    from timegrpo.config import load_recipe
    from timegrpo.models.loading import load_policy

    m = load_recipe(run_dir / "config.yaml").model
    policy, _ = load_policy(str(base), dtype="float32", use_lora=True, train_merger=m.train_merger,
                            lora_kwargs={"r": m.lora_r, "alpha": m.lora_alpha, "dropout": 0.0,
                                         "target_modules": list(m.lora_target_modules)})
    missing, unexpected = policy.load_state_dict(shards, strict=False)
    assert not unexpected and not [k for k in missing if "lora_" in k or "modules_to_save" in k]
    return policy.merge_and_unload().state_dict()


def assert_checkpoint(run_dir, step, stage, base, lora=False):
    """``checkpoint-STEP`` loads with ``from_pretrained``, equals its ZeRO shards, and moved where it trains."""
    checkpoint = run_dir / f"checkpoint-{step}"
    saved = pretrained_weights(checkpoint)
    shards = shard_weights(checkpoint, stage)
    expected = lora_merged(shards, base, run_dir) if lora else shards
    assert set(expected) == set(saved)
    for name, value in saved.items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    original = pretrained_weights(base)
    moved = {k for k in saved if not torch.equal(saved[k], original[k])}
    assert any(".merger." in k for k in moved) and any("language_model" in k for k in moved)
    assert not any("visual.blocks" in k for k in moved)
    return saved


def frozen_engines(log):
    """``{name: (stage, held, total)}`` of the frozen models the run logged on process 0 (stage: the device's
    name when DeepSpeed does not hold the model, as under DDP)."""
    return {m[1]: (int(m[2]) if m[2] else m[3], int(m[4]), int(m[5])) for m in FROZEN.finditer(log)}


MAKE = """
from timegrpo.trainer.launch import make_accelerator
try:
    print("made", make_accelerator().distributed_type)
except RuntimeError as err:
    print("refused:", err)
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize(("env", "expected"), [
    ({"DS_ACCELERATOR": "cuda"}, "refused: .*DeepSpeed's accelerator is 'cuda': set DS_ACCELERATOR=cpu"),
    ({"DS_ACCELERATOR": "cpu", "ACCELERATE_USE_CPU": "true"}, "refused: .*asks for DeepSpeed but Accelerate runs "
                                                              "DistributedType.MULTI_CPU: drop --cpu"),
    ({"DS_ACCELERATOR": "cpu"}, "made DistributedType.DEEPSPEED"),
])
def test_a_deepspeed_launch_runs_deepspeed_or_stops_saying_why(env, expected, free_port):
    """Without CUDA, a DeepSpeed launch gets DeepSpeed's CPU accelerator; when it cannot (DeepSpeed's
    accelerator is not the CPU, or --cpu turned DeepSpeed off) it stops, never running DDP silently. One
    process of a torchrun-style launch, as ``accelerate launch --config_file launch/zero3.yaml`` starts it."""
    launched = {"ACCELERATE_USE_DEEPSPEED": "true", "LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1",
                "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "DS_"))}
    proc = subprocess.run([sys.executable, "-c", MAKE], capture_output=True, text=True, timeout=300,
                          env={**base, **launched, **env, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(expected, proc.stdout), proc.stdout


def test_zero3_with_reference_matches_one_process_and_saves_loadable_checkpoints(launch, synth_dir, models,
                                                                                  tmp_path, monkeypatch):
    """ZeRO-3, beta 0.04, linear warm-up + decay over 3 steps: the reference is a fresh load sharded like the
    policy, kl is logged, the learning rate of every step is the one-process schedule, the checkpoint is
    what the shards hold, and 2 processes x 1 micro-batch end where 1 process x 2 micro-batches ends."""
    schedule = ["--train.max_steps", "3", "--train.lr_scheduler_type", "linear", "--train.warmup_ratio", "0.5",
                "--train.beta", "0.04"]
    rows, log = launch("zero3.yaml", "zero3", *schedule)
    assert [r["learning_rate"] for r in rows] == pytest.approx([1.5e-4, 3e-4, 0.0], rel=1e-9, abs=1e-12)
    assert rows[0]["kl"] == 0.0 and rows[-1]["kl"] > 0  # steps 1 and 2 start from the reference (lr 0 at step 1)
    stage, held, total = frozen_engines(log)["reference"]
    assert stage == 3 and 0 < held < total  # sharded, not a whole copy on each process
    saved = assert_checkpoint(tmp_path / "zero3", 3, 3, models[0])

    from timegrpo.cli import main

    monkeypatch.syspath_prepend(str(HERE))
    one = tmp_path / "one"
    assert main(["train", "--config", str(RECIPE), "--model.model_name_or_path", str(models[0]),
                 *data_args(synth_dir, tmp_path / "frames"), "--train.output_dir", str(one), *SMALL, *schedule,
                 "--train.gradient_accumulation_steps", "2"]) == 0
    single = pretrained_weights(one / "checkpoint-3")
    for name, value in single.items():
        torch.testing.assert_close(saved[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize(("config", "case"), [("zero2.yaml", "beta"), ("zero2.yaml", "lora"), ("zero3.yaml", "lora"),
                                              ("zero2.yaml", "opd"), ("zero3.yaml", "opd")])
def test_launch_trains_and_saves(launch, models, tmp_path, config, case):
    """Each DeepSpeed config with a reference (beta > 0; ZeRO-3's is the default test), with LoRA (the
    adapter-disabled policy is the reference) and with an OPD teacher: it trains, logs kl / the teacher's
    reward, and saves checkpoints that ``from_pretrained`` loads and that equal the shards (peft's merge of
    them for LoRA)."""
    stage = 3 if config == "zero3.yaml" else 2
    overrides = {"beta": ["--train.beta", "0.04"],
                 "lora": ["--train.beta", "0.04", "--model.use_lora", "true", "--model.lora_dropout", "0"],
                 "opd": ["--method", "opd", "--train.teacher_model_name_or_path", str(models[1]),
                         "--train.num_generations", "1", "--train.loss_type", "dapo"]}[case]
    rows, log = launch(config, case, *overrides)
    engines = frozen_engines(log)
    if case == "opd":
        assert all(r["opd/reward_mean"] != 0 for r in rows) and "kl" not in rows[0]
    else:
        assert rows[0]["kl"] == 0.0 and rows[1]["kl"] > 0
    if case == "lora":
        assert not engines  # no second model: the reference is the policy with its adapter disabled
    else:
        name = "teacher" if case == "opd" else "reference"
        frozen_stage, held, total = engines[name]
        assert frozen_stage == (3 if stage == 3 else 0) and (held < total) == (stage == 3)
    assert_checkpoint(tmp_path / case, 2, stage, models[0], lora=case == "lora")


@pytest.mark.slow
def test_ddp_launch_prepares_the_teacher_on_each_process(launch, models, tmp_path):
    """DDP (launch/ddp.yaml, 2 processes over gloo on CPU) with an OPD teacher: each process holds the whole
    frozen teacher on its device, the teacher's reward is logged, and the saved checkpoint is the policy trained."""
    rows, log = launch("ddp.yaml", "ddp_opd", "--method", "opd", "--train.teacher_model_name_or_path", str(models[1]),
                       "--train.num_generations", "1", "--train.loss_type", "dapo")
    device, held, total = frozen_engines(log)["teacher"]
    assert device.startswith("cpu") and held == total > 0
    assert "DeepSpeed" not in log.split("teacher:")[1].splitlines()[0]
    assert [r["prompts"] for r in rows] == [2.0, 2.0]  # one prompt on each of the 2 processes
    assert all(r["opd/reward_mean"] != 0 for r in rows) and "kl" not in rows[0]
    saved, original = pretrained_weights(tmp_path / "ddp_opd" / "checkpoint-2"), pretrained_weights(models[0])
    moved = {k for k in saved if not torch.equal(saved[k], original[k])}
    assert any("language_model" in k for k in moved) and not any("visual.blocks" in k for k in moved)


@pytest.mark.slow
def test_zero3_resume_reaches_the_same_state(launch, tmp_path):
    """A ZeRO-3 run resumed from its step-2 checkpoint (shards, scheduler, RNG, step) ends where the
    uninterrupted run ends."""
    common = ["--train.max_steps", "3", "--train.beta", "0.04", "--train.lr_scheduler_type", "linear"]
    full, _ = launch("zero3.yaml", "full", *common, "--train.save_steps", "2")
    resumed, _ = launch("zero3.yaml", "resumed", *common, "--train.resume_from_checkpoint",
                        str(tmp_path / "full" / "checkpoint-2"))
    assert [r["step"] for r in resumed] == [3]
    for key in ("reward", "kl", "loss", "learning_rate"):
        assert resumed[0][key] == pytest.approx(full[-1][key], rel=1e-6, abs=1e-9), key
    a, b = pretrained_weights(tmp_path / "full" / "checkpoint-3"), pretrained_weights(tmp_path / "resumed" / "checkpoint-3")
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=0, atol=1e-7, msg=name)
