"""The eval/*.sh benchmark scripts: usage text without arguments, and (DRY_RUN=1) a `timegrpo eval` command
that the real parser accepts, with the published protocol's settings."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from timegrpo.cli import build_parser
from timegrpo.cli.eval import config_from_args
from timegrpo.evaluate.config import EvalConfig


def eval_config(argv: list[str]) -> EvalConfig:
    """The EvalConfig that ``timegrpo eval`` builds from ``argv`` (the words after ``timegrpo``), as
    :func:`timegrpo.cli.main` parses them."""
    args, overrides = build_parser().parse_known_args(argv)
    args.overrides = overrides
    cfg = config_from_args(args)
    assert cfg is not None
    return cfg

EVAL = Path(__file__).resolve().parents[2] / "eval"
SCRIPTS = {"charades_sta.sh": "charades_sta", "activitynet.sh": "activitynet", "tvgbench.sh": "tvgbench",
           "qvhighlights.sh": "moment_detr", "tacos.sh": None, "timelens_charades.sh": "timelens_bench",
           "timelens_activitynet.sh": "timelens_bench", "timelens_qvhighlights.sh": "timelens_bench"}
#: (fps, max_frames, min_pixels, total_pixels, template, query_as_is, max_new_tokens, batch_size) of each protocol
TIME_R1 = (2.0, 768, 16 * 28 * 28, 3584 * 28 * 28, "think", True, 1024, 4)
TIMELENS = (2.0, 768, 64 * 28 * 28, 14336 * 28 * 28, "no_think", True, 512, 1)


def run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(EVAL / script), *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **env})


def test_every_script_is_listed_in_the_readme_and_has_its_config():
    readme = (EVAL / "README.md").read_text()
    assert sorted(p.name for p in EVAL.glob("*.sh") if not p.name.startswith("_")) == sorted(SCRIPTS)
    assert sorted(p.name for p in EVAL.glob("*.yaml")) == sorted(s.replace(".sh", ".yaml") for s in SCRIPTS)
    assert all(f"`{name}`" in readme for name in SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_config_file_alone_is_the_script(script):
    """``timegrpo eval --config eval/X.yaml`` plus the four paths is exactly the run the script launches."""
    paths = ["--model", "m", "--annotations", "a", "--videos", "v", "--out", "o"]
    res = run(script, "m", "a", "v", "o", DRY_RUN="1")
    from_script = eval_config(shlex.split(res.stdout.splitlines()[0])[1:])
    from_yaml = eval_config(["eval", "--config", str(EVAL / script.replace(".sh", ".yaml")), *paths])
    assert from_yaml == from_script
    assert from_yaml != eval_config(["eval", *paths])  # the file does set the protocol


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_usage_without_arguments(script):
    res = run(script)
    assert res.returncode == 2 and f"usage: eval/{script} MODEL ANNOTATIONS VIDEOS OUT" in res.stdout
    assert "Protocol" in res.stdout and "DRY_RUN" in res.stdout


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_dry_run_is_a_valid_eval_command_with_the_protocol(script):
    res = run(script, "Qwen/Qwen2.5-VL-7B-Instruct", "ann file.json", "videos", "out dir", "--limit", "5",
              DRY_RUN="1")
    assert res.returncode == 0, res.stderr
    argv = shlex.split(res.stdout.splitlines()[0])
    assert argv[:2] == ["timegrpo", "eval"]
    cfg = eval_config(argv[1:])
    assert (cfg.model, cfg.annotations, cfg.videos, cfg.out) == ("Qwen/Qwen2.5-VL-7B-Instruct", "ann file.json",
                                                                     "videos", "out dir")
    assert cfg.format == SCRIPTS[script] and cfg.limit == 5
    v = cfg.video
    assert (v.fps, v.max_frames, v.min_pixels, v.total_pixels, cfg.template, cfg.query_as_is,
            cfg.sampling.max_new_tokens, cfg.batch_size) == (TIMELENS if script.startswith("timelens") else TIME_R1)
    assert (cfg.sampling.do_sample, cfg.on_bad, cfg.backend) == (False, "clip", "hf")


@pytest.mark.parametrize("script", sorted(s for s in SCRIPTS if s.startswith("timelens")))
def test_timelens_scripts_then_score_under_the_timelens_protocol(script):
    from timegrpo.config.core import from_args
    from timegrpo.evaluate.config import ScoreConfig

    res = run(script, "m", "ann file.json", "v", "out dir", DRY_RUN="1")
    eval_line, score_line = res.stdout.splitlines()
    assert eval_config(shlex.split(eval_line)[1:]).out == "out dir"
    argv = shlex.split(score_line)
    assert argv[:2] == ["timegrpo", "score"]
    args, args.overrides = build_parser().parse_known_args(argv[1:])
    cfg = from_args(ScoreConfig, args)
    assert cfg.predictions == "out dir/predictions.jsonl" and cfg.annotations == "ann file.json"
    assert (cfg.protocol, cfg.from_completion, cfg.missing, cfg.json) == ("timelens", True, "skip", True)
    assert cfg.out_md == "out dir/metrics_timelens.md"


def test_nproc_launches_accelerate_and_extra_flags_win():
    res = run("charades_sta.sh", "m", "a.txt", "v", "o", "--template", "no_think", DRY_RUN="1", NPROC="4",
              DURATIONS="/d/Charades_v1_test.csv")
    argv = shlex.split(res.stdout)
    assert argv[:7] == ["accelerate", "launch", "--multi_gpu", "--num_processes", "4", "-m", "timegrpo.cli"]
    cfg = eval_config(argv[7:])
    assert cfg.template == "no_think" and cfg.durations == "/d/Charades_v1_test.csv"
