"""launch/: every Accelerate config is read by Accelerate's own loader and launcher code, and slurm.sh
composes a valid per-node command (nothing is actually launched)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "launch"

# file -> (distributed_type, zero_stage, offload device, num_machines)
EXPECTED = {
    "single_gpu.yaml": ("NO", None, None, 1),
    "ddp.yaml": ("MULTI_GPU", None, None, 1),
    "zero2.yaml": ("DEEPSPEED", 2, "none", 1),
    "zero3.yaml": ("DEEPSPEED", 3, "none", 1),
    "zero3_offload.yaml": ("DEEPSPEED", 3, "cpu", 1),
    "multi_node.yaml": ("DEEPSPEED", 3, "none", 2),
}


def validated_args(argv):
    """What `accelerate launch ARGV` resolves to, without launching."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args, defaults, mp_from_config = _validate_launch_command(launch_command_parser().parse_args(argv))
    return args, defaults, mp_from_config


def test_every_config_is_covered():
    assert sorted(p.name for p in LAUNCH.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_loads_with_accelerates_dataclass(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    cfg = load_config_from_file(str(LAUNCH / name))  # raises on keys ClusterConfig does not know
    assert isinstance(cfg, ClusterConfig)
    dist, stage, offload, machines = EXPECTED[name]
    assert cfg.distributed_type.value == dist and cfg.num_machines == machines
    assert cfg.mixed_precision == "bf16" and cfg.use_cpu is False
    if stage is None:
        assert not cfg.deepspeed_config
        return
    # accelerate copies each deepspeed_config key onto a launch argument of the same name: a key with no
    # such argument would be silently ignored, so check them all.
    launch_dests = set(vars(launch_command_parser().parse_args(["x"])))
    assert set(cfg.deepspeed_config) <= launch_dests
    assert cfg.deepspeed_config["zero_stage"] == stage
    assert cfg.deepspeed_config["offload_optimizer_device"] == offload
    # accumulation and clipping come from the recipe, not from the launch file
    assert "gradient_accumulation_steps" not in cfg.deepspeed_config
    assert "gradient_clipping" not in cfg.deepspeed_config


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launcher_environment(name, monkeypatch):
    from accelerate.utils.launch import (
        prepare_deepspeed_cmd_env,
        prepare_multi_gpu_env,
        prepare_simple_launcher_cmd_env,
    )

    args, defaults, mp_from_config = validated_args(
        ["--config_file", str(LAUNCH / name), "-m", "timegrpo.train", "--config", "recipes/x.yaml"]
    )
    dist, stage, offload, machines = EXPECTED[name]
    assert (args.use_deepspeed, args.multi_gpu) == (dist == "DEEPSPEED", dist == "MULTI_GPU")
    assert args.num_machines == machines and args.mixed_precision == "bf16"
    if dist == "NO":
        cmd, env = prepare_simple_launcher_cmd_env(args)
        assert cmd[1:] == ["-m", "timegrpo.train", "--config", "recipes/x.yaml"]
    elif dist == "MULTI_GPU":
        env = prepare_multi_gpu_env(args)
        assert str(args.nproc_per_node) == "8"  # the torchrun argument
    else:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
        assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
        assert env["ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"] == offload
        from accelerate.utils import DeepSpeedPlugin

        for key, value in env.items():
            if key.startswith("ACCELERATE_"):
                monkeypatch.setenv(key, value)
        monkeypatch.delenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", raising=False)
        plugin = DeepSpeedPlugin()
        zero = plugin.deepspeed_config["zero_optimization"]
        assert zero["stage"] == stage and zero["offload_optimizer"]["device"] == offload
        assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"  # filled from the Accelerator
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def slurm(*argv, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_"))}
    full_env.update(env)
    return subprocess.run(["bash", str(LAUNCH / "slurm.sh"), *argv], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_slurm_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(LAUNCH / "slurm.sh")], capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_composes_one_launch_per_node_with_its_rank():
    out = slurm("--dry-run", "recipes/time_r1_qwen2_5_vl_7b.yaml", "--train.beta", "0", "--run_name", "my run",
                SLURM_NNODES="2", MASTER_ADDR="node01", GPUS_PER_NODE="4")
    assert out.returncode == 0, out.stderr
    cmd = out.stdout.strip()
    assert "--machine_rank $SLURM_NODEID" in cmd
    # what srun's shell on node 1 runs: expand $SLURM_NODEID there, then hand the words to accelerate's parser
    words = subprocess.run(["bash", "-c", f"printf '%s\\n' {cmd}"], env={"SLURM_NODEID": "1", "PATH": os.defpath},
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert words[:2] == ["accelerate", "launch"]
    argv = words[2:]
    argv[argv.index("--config_file") + 1] = str(REPO / "launch/multi_node.yaml")
    args, _, _ = validated_args(argv)
    assert (args.num_machines, args.num_processes, args.machine_rank) == (2, 8, 1)
    assert (args.main_process_ip, args.main_process_port, args.use_deepspeed) == ("node01", 29500, True)
    assert args.training_script_args == ["--config", "recipes/time_r1_qwen2_5_vl_7b.yaml", "--train.beta", "0",
                                         "--run_name", "my run"]
    assert shlex.split(cmd)[-1] == "my run"


def test_slurm_without_a_job_or_recipe_says_what_to_do():
    out = slurm("--dry-run", "recipes/x.yaml")
    assert out.returncode != 0 and "not inside a SLURM job: set MASTER_ADDR" in out.stderr
    out = slurm()
    assert out.returncode != 0 and "usage: sbatch launch/slurm.sh" in out.stderr
