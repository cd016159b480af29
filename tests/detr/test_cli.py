"""`timegrpo detr ...` and the recipes: every recipe loads, states its launch line, and the commands run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from timegrpo.cli import build_parser, main
from timegrpo.detr.cli import add_synth_features_parser
from timegrpo.detr.config import DetrConfig, apply_overrides, load_config

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "detr").glob("*.yaml"))


def test_there_are_recipes_for_the_three_datasets_and_the_demo() -> None:
    assert {p.stem for p in RECIPES} >= {"qvhighlights", "charades_sta", "tacos", "synthetic"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_first_line_is_its_launch_command(recipe: Path) -> None:
    cfg = load_config(recipe)
    first = recipe.read_text().splitlines()[0]
    assert first.startswith("# timegrpo detr ") and f"recipes/detr/{recipe.name}" in first
    assert (cfg.model.hidden_dim, cfg.model.num_queries) == ((64, 10) if recipe.stem == "synthetic" else (256, 10))
    assert cfg.model.enc_layers == cfg.model.dec_layers == 3


def test_real_dataset_recipes_follow_the_spec() -> None:
    by = {p.stem: load_config(p) for p in RECIPES}
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
    cfg = apply_overrides(DetrConfig(), ["--data.video_feat_dirs", "[a, b]", "--max_v_len", "null", "--rl.lr", "3e-5"])
    assert cfg.data.video_feat_dirs == ["a", "b"] and cfg.data.max_v_len is None and cfg.rl.lr == 3e-5
    with pytest.raises(ValueError, match="unknown config key data.nope; known: annotation_format"):
        apply_overrides(DetrConfig(), ["--data.nope", "1"])
    with pytest.raises(ValueError, match="expected int"):
        apply_overrides(DetrConfig(), ["--train.epochs", "many"])
    with pytest.raises(ValueError, match="rl.p2 .* must be >= rl.p1"):
        apply_overrides(DetrConfig(), ["--rl.p1", "5", "--rl.p2", "3"])


def test_parser_exposes_every_action_and_the_data_hook() -> None:
    args = build_parser().parse_args(["detr", "train", "--config", "x.yaml", "--data.root", "/d", "--clip_len", "1"])
    assert args.config == "x.yaml" and getattr(args, "cfg:data.root") == "/d" and getattr(args, "cfg:data.clip_len") == "1"
    for action in ("rl", "predict"):
        assert build_parser().parse_args(["detr", action, "--config", "x.yaml"]).func is not None
    # the `timegrpo data` group can mount the same parser
    sub = argparse.ArgumentParser().add_subparsers()
    p = add_synth_features_parser(sub)
    ns = p.parse_args(["--out", "/tmp/x", "--n", "5", "--seed", "2", "--synth.noise", "0.1"])
    assert (ns.out, ns.n, ns.seed, getattr(ns, "cfg:synth.noise")) == ("/tmp/x", 5, 2, "0.1")


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
    assert main(["detr", "rl", *common, "--rl.epochs", "1"]) == 0
    rl = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rl["changed_parameters"] and all(n.split(".")[0] in {"span_head", "class_head", "iou_head"}
                                            for n in rl["changed_parameters"])
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
