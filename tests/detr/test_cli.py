"""`timegrpo detr ...` and the recipes: every recipe loads, states its launch line, and the commands run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from timegrpo.cli import build_parser, main
from timegrpo.cli.detr import add_synth_features_parser
from timegrpo.config import core
from timegrpo.config.core import ConfigError
from timegrpo.detr.config import DetrConfig, load_detr_config

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "detr").glob("*.yaml"))


def test_there_are_recipes_for_the_three_datasets_and_the_demo() -> None:
    assert {p.stem for p in RECIPES} >= {"qvhighlights", "charades_sta", "tacos", "synthetic"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_first_line_is_its_launch_command(recipe: Path) -> None:
    cfg = load_detr_config(recipe)
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("# timegrpo detr ") and f"recipes/detr/{recipe.name}" in first
    assert (cfg.model.hidden_dim, cfg.model.num_queries) == ((64, 10) if recipe.stem == "synthetic" else (256, 10))
    assert cfg.model.enc_layers == cfg.model.dec_layers == 3


def test_real_dataset_recipes_follow_the_spec() -> None:
    by = {p.stem: load_detr_config(p) for p in RECIPES}
    assert by["qvhighlights"].data.clip_len == 2.0 and by["qvhighlights"].loss.saliency_coef > 0
    assert by["charades_sta"].data.clip_len == by["tacos"].data.clip_len == 1.0
    assert by["charades_sta"].rl.cosine_decay and not by["qvhighlights"].rl.cosine_decay
    assert by["tacos"].data.text_file == "{qid}.npz"
    for name in ("qvhighlights", "charades_sta", "tacos"):
        c = by[name]
        assert (c.model.nheads, c.model.dim_feedforward) == (8, 1024)
        assert (c.loss.span_coef, c.loss.giou_coef, c.loss.label_coef, c.loss.eos_coef) == (10, 1, 4, 0.1)
        assert (c.train.weight_decay, c.train.grad_clip, c.train.ema_decay) == (1e-4, 0.1, 0.999)
        assert c.data.max_q_len == 32


def test_overrides_are_typed_and_checked() -> None:
    cfg = load_detr_config(None, ["--data.video_feat_dirs", "[a, b]", "--max_v_len", "null", "--rl.lr", "3e-5",
                                  "--temporal_encoding", "false", "--train.lr_drop", "40", "--rl.init", "none"])
    assert cfg.data.video_feat_dirs == ["a", "b"] and cfg.data.max_v_len is None and cfg.rl.lr == 3e-5
    assert cfg.data.temporal_encoding is False and cfg.train.lr_drop == 40 and cfg.rl.init is None
    # a key in data and synth means data's; the top-level seed is not synth.seed
    cfg = load_detr_config(None, ["--clip_len", "1", "--seed", "7", "--synth.splits", "[0.5, 0.25, 0.25]"])
    assert (cfg.data.clip_len, cfg.synth.clip_len, cfg.seed, cfg.synth.seed) == (1.0, 2.0, 7, 0)
    assert cfg.synth.splits == [0.5, 0.25, 0.25]
    with pytest.raises(ConfigError, match="unknown option --data.nope"):
        load_detr_config(None, ["--data.nope", "1"])
    with pytest.raises(ConfigError, match="--train.epochs: expected an integer, got 'many'"):
        load_detr_config(None, ["--train.epochs", "many"])
    with pytest.raises(ConfigError, match="option --lr is ambiguous: say which with --train.lr or --rl.lr"):
        load_detr_config(None, ["--lr", "1e-3"])
    # each section's own validation, with its message
    with pytest.raises(ConfigError, match=r"rl.p2 \(3\) must be >= rl.p1 \(5\)"):
        load_detr_config(None, ["--rl.p1", "5", "--rl.p2", "3"])
    with pytest.raises(ConfigError, match="data.on_bad must be 'error', 'skip' or 'clip', got 'drop'"):
        load_detr_config(None, ["--on_bad", "drop"])
    with pytest.raises(ConfigError, match="model.hidden_dim 30 must be divisible by model.nheads 8"):
        load_detr_config(None, ["--hidden_dim", "30"])


def test_parser_exposes_every_action_and_the_data_hook() -> None:
    args, extra = build_parser().parse_known_args(["detr", "train", "--config", "x.yaml", "--data.root", "/d",
                                                   "--clip_len", "1"])
    assert args.config == "x.yaml" and args.accepts_overrides and extra == ["--data.root", "/d", "--clip_len", "1"]
    for action in ("rl", "predict", "demo"):
        assert build_parser().parse_known_args(["detr", action, "--config", "x.yaml", "--out", "o"])[0].func is not None
    # the `timegrpo data` group can mount the same parser; `--n` and `--seed` are its own, the rest overrides
    sub = argparse.ArgumentParser().add_subparsers()
    p = add_synth_features_parser(sub)
    ns, extra = p.parse_known_args(["--out", "/tmp/x", "--n", "5", "--seed", "2", "--synth.noise", "0.1"])
    assert (ns.out, ns.n, ns.seed, extra) == ("/tmp/x", 5, 2, ["--synth.noise", "0.1"])


def test_print_config_resolves_the_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    recipe = next(p for p in RECIPES if p.stem == "tacos")
    assert main(["detr", "train", "--config", str(recipe), "--clip_len", "2", "--print-config"]) == 0
    again = core.from_dict(DetrConfig, yaml.safe_load(capsys.readouterr().out))
    assert again == load_detr_config(recipe, ["--data.clip_len", "2"])
    assert again.data.clip_len == 2.0 and again.data.max_v_len is None


def test_synth_features_takes_the_synth_section_and_pins_n_and_seed(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    recipe = next(p for p in RECIPES if p.stem == "synthetic")
    argv = ["detr", "synth-features", "--out", str(tmp_path), "--config", str(recipe), "--synth.n_videos", "3",
            "--n", "7", "--noise", "0.3", "--clip_len", "1", "--synth.min_event", "2"]
    assert main([*argv, "--print-config"]) == 0
    synth = yaml.safe_load(capsys.readouterr().out)["synth"]
    assert (synth["n_videos"], synth["seed"], synth["noise"], synth["clip_len"]) == (7, 0, 0.3, 1.0)
    assert main(["data", "synth-features", "--out", str(tmp_path), "--n", "4", "--seed", "9", "--bogus", "1"]) == 2
    assert "unknown option --bogus" in capsys.readouterr().err


def test_config_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    recipe = next(p for p in RECIPES if p.stem == "synthetic")
    assert main(["detr", "rl", "--config", str(recipe), "--rl.p1", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("timegrpo detr: error: rl.p2 (4) must be >= rl.p1 (9)") and err.count("\n") == 1


def test_relative_paths_without_root_give_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    recipe = next(p for p in RECIPES if p.stem == "qvhighlights")
    assert main(["detr", "train", "--config", str(recipe)]) == 2
    assert "pass --data.root DIR" in capsys.readouterr().err


def test_synth_train_predict_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["detr", "synth-features", "--out", str(data), "--n", "12", "--seed", "5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    qids = {split: [json.loads(x)["qid"] for x in (data / "annotations" / f"{split}.jsonl").read_text().splitlines()]
            for split in ("train", "val", "test")}
    assert {split: len(q) for split, q in qids.items()} == summary["queries"]
    text = sorted(p.name for p in (data / "features/text").iterdir())
    assert text == sorted(f"qid{q}.npz" for q in sum(qids.values(), []))  # one text file per query, no other
    recipe = next(p for p in RECIPES if p.stem == "synthetic")
    common = ["--config", str(recipe), "--data.root", str(data), "--out_root", str(tmp_path), "--threads", "1",
              "--model.hidden_dim", "32", "--model.dim_feedforward", "64"]
    assert main(["detr", "train", *common, "--train.epochs", "1"]) == 0
    assert (tmp_path / "run/supervised/best.ckpt").is_file()
    capsys.readouterr()
    # one epoch of supervised training is still improving: refused by default, with how to continue
    assert main(["detr", "rl", *common, "--rl.epochs", "1", "--rl.on_unconverged", "error"]) == 2
    err = capsys.readouterr().err
    assert "still improving" in err and "--train.epochs 2" in err and err.count("\n") == 1
    assert main(["detr", "rl", *common, "--rl.epochs", "1", "--rl.on_unconverged", "warn"]) == 0
    out = capsys.readouterr().out
    assert "warning: supervised checkpoint" in out
    rl = json.loads(out.strip().splitlines()[-1])
    assert rl["changed_parameters"] and all(n.split(".")[0] in {"span_head", "class_head", "iou_head"}
                                            for n in rl["changed_parameters"])
    # `detr rl` reports RL beside its control on the test split, paired
    assert rl["split"] == "test" and {"supervised", "rl", "control", "rl_minus_control"} <= set(rl)
    assert rl["rl_minus_control"]["mIoU"] == pytest.approx(rl["rl"]["mIoU"] - rl["control"]["mIoU"], abs=1e-9)
    assert (tmp_path / "run/rl_control/final.ckpt").is_file()
    assert json.loads((tmp_path / "run/rl/comparison.json").read_text())["rl"] == rl["rl"]
    assert main(["detr", "predict", *common, "--predict.split", "val"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["predictions"].endswith("predictions_val.jsonl") and set(out["metrics"]) >= {"R1@0.5", "mIoU"}
    first = json.loads(Path(out["predictions"]).read_text().splitlines()[0])
    assert isinstance(first["qid"], int) and len(first["pred_relevant_windows"]) == 10
    # the shared scorer reads the file and agrees with our own R1/mIoU
    assert main(["score", "--predictions", out["predictions"], "--annotations", str(data / "annotations/val.jsonl"),
                 "--benchmark", "grounding", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    for key in ("R1@0.5", "R1@0.7", "mIoU"):
        assert scored[key] == pytest.approx(out["metrics"][key], abs=1e-6)
    # and the official QVHighlights metric set runs on it (whole 2-s clips, saliency scores per clip)
    assert main(["score", "--predictions", out["predictions"], "--annotations", str(data / "annotations/val.jsonl"),
                 "--benchmark", "qvhighlights", "--json"]) == 0
    qvh = json.loads(capsys.readouterr().out)
    assert qvh["MR-full-R1@0.7"] == pytest.approx(out["metrics"]["R1@0.7"], abs=1e-6) and "HL-min-VeryGood-mAP" in qvh
