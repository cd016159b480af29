"""`timegrpo push`: the upload folder, the model card, the load-back check and the (faked) upload, all offline.

A fake run is built once: ``out/checkpoint-3`` is a tiny Qwen2.5-VL saved with ``save_tiny_vlm`` plus the
training state a real checkpoint has (``state/`` and a top-level RNG file), ``out/config.yaml`` is the Time-R1
recipe with overrides saved by ``save_config``, ``out/metrics.jsonl`` a 3-step log, and ``evals/charades`` an
evaluation folder with known numbers.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import metadata_load

from timegrpo.cli import main
from timegrpo.config import load_recipe, save_config, to_dict
from timegrpo.hub import PushError, push_checkpoint, read_eval
from timegrpo.prompts import get_template

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "time_r1_qwen2_5_vl_7b.yaml"
#: metrics.json as `timegrpo eval` writes it (numbers, counts, nested reports, the benchmark kind)
CHARADES = {"R1@0.3": 61.25, "R1@0.5": 45.5, "R1@0.7": 20.75, "mIoU": 41.125, "format_rate": 98.0, "n": 80,
            "n_skipped": 3, "unparsed": 2, "skipped": {}, "benchmark": "grounding", "annotations": {"records": 80}, "run": {}}
ANET = {"R1@0.3": 50.0, "R1@0.5": 30.0, "R1@0.7": 12.5, "mIoU": 33.3333}
#: What the upload folder of checkpoint-3 with the charades evaluation holds: no `state/`, no `rng_state.pth`.
UPLOADED = ["README.md", "chat_template.jinja", "config.json", "eval/charades_sta/eval_config.json",
            "eval/charades_sta/metrics.json", "generation_config.json", "model.safetensors", "processor_config.json",
            "recipe.yaml", "tokenizer.json", "tokenizer_config.json", "training_metrics.jsonl"]
#: Checkpoint files that are training state (the run_dir fixture writes them); none is ever uploaded.
TRAINING_STATE = ["rng_state.pth", "state/optimizer.bin", "state/random_states_0.pkl"]
OVERRIDES = ["--data.train_file", "data/time_r1/train_2k5.json", "--train.max_steps", "3", "--data.nframes", "4",
             "--max_completion_length", "8", "--data.total_pixels", "4096*28*28"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from timegrpo.models.tiny import save_tiny_vlm

    root = tmp_path_factory.mktemp("hub")
    out = root / "out"
    ckpt = save_tiny_vlm("qwen2_5_vl", out / "checkpoint-3")
    (ckpt / "state").mkdir()
    (ckpt / "state" / "optimizer.bin").write_bytes(b"\0" * 64)
    (ckpt / "state" / "random_states_0.pkl").write_bytes(b"\0" * 8)
    (ckpt / "rng_state.pth").write_bytes(b"\0" * 8)
    cfg = load_recipe(RECIPE, [*OVERRIDES, "--train.output_dir", str(out)])
    launch = RECIPE.read_text().splitlines()[0]
    save_config(cfg, out / "config.yaml", header=launch.lstrip("# "))
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward": 0.5 + s / 10, "iou": s / 10}) + "\n"
                                               for s in (1, 2, 3)))
    for name, metrics, cfg_json in (
        ("charades", CHARADES, {"annotations": {"path": "/data/charades_sta_test.txt", "format": "charades_sta"},
                                "split": "test", "sampling": {"do_sample": False}}),
        ("anet", ANET, {"annotations": "/data/val_2.json", "format": "activitynet", "split": "val_2"}),
    ):
        d = root / "evals" / name
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(metrics))
        (d / "eval_config.json").write_text(json.dumps(cfg_json))
    return root


def _push(run_dir: Path, *extra: str) -> list[str]:
    return ["push", str(run_dir / "out" / "checkpoint-3"), "--repo-id", "me/tiny-time-r1",
            "--eval", str(run_dir / "evals" / "charades"), *extra]


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _card_code(readme: Path) -> str:
    text = readme.read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_dry_run_writes_a_loadable_folder_without_training_state(run_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "upload"
    assert main([*_push(run_dir, "--dry-run", "--out", str(out))]) == 0
    printed = capsys.readouterr().out
    assert f"upload folder: {out}" in printed and "dry run: nothing uploaded" in printed
    left_out = [line for line in printed.splitlines() if line.startswith("left out: ")]
    assert left_out == ["left out: rng_state.pth (training state)",
                        "left out: state/ (folder: training state or not part of a from_pretrained model)"]
    assert f"files (12): {', '.join(UPLOADED)}" in printed
    files = _files(out)
    assert files == UPLOADED and not set(TRAINING_STATE) & set(files)
    # every top-level checkpoint file but the RNG state is uploaded byte for byte; the evaluation and the log verbatim
    ckpt = run_dir / "out" / "checkpoint-3"
    model_files = [f for f in UPLOADED if "/" not in f and f not in ("README.md", "recipe.yaml", "training_metrics.jsonl")]
    assert sorted(p.name for p in ckpt.iterdir() if p.is_file()) == sorted([*model_files, "rng_state.pth"])
    assert all((out / f).read_bytes() == (ckpt / f).read_bytes() for f in model_files)
    assert json.loads((out / "eval" / "charades_sta" / "metrics.json").read_text()) == CHARADES
    assert (out / "training_metrics.jsonl").read_text() == (run_dir / "out" / "metrics.jsonl").read_text()
    # the weights load back identical to the checkpoint's, and the processor renders the same chat
    state = AutoModelForImageTextToText.from_pretrained(out).state_dict()
    ref_state = AutoModelForImageTextToText.from_pretrained(run_dir / "out" / "checkpoint-3").state_dict()
    assert load_file(out / "model.safetensors").keys() == load_file(ckpt / "model.safetensors").keys()
    assert state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], v) for k, v in ref_state.items())
    proc, ref = AutoProcessor.from_pretrained(out), AutoProcessor.from_pretrained(run_dir / "out" / "checkpoint-3")
    chat = [{"role": "user", "content": [{"type": "text", "text": "when?"}, {"type": "video"}]}]
    assert proc.apply_chat_template(chat, add_generation_prompt=True) == ref.apply_chat_template(
        chat, add_generation_prompt=True)
    assert "<|video_pad|>" in proc.apply_chat_template(chat, add_generation_prompt=True)
    # the recipe is the run's config, verbatim, and loads back to the same config
    assert (out / "recipe.yaml").read_text() == (run_dir / "out" / "config.yaml").read_text()
    assert to_dict(load_recipe(out / "recipe.yaml")) == to_dict(load_recipe(run_dir / "out" / "config.yaml"))


def test_card_front_matter_and_model_index(run_dir, tmp_path):
    out = tmp_path / "upload"
    assert main([*_push(run_dir, "--dry-run", "--out", str(out), "--check", "none",
                        "--eval", f"anet={run_dir / 'evals' / 'anet'}")]) == 0
    meta = metadata_load(out / "README.md")
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "video-text-to-text"
    assert meta["tags"] == ["timegrpo", "grpo", "reinforcement-learning", "temporal-video-grounding", "video-llm",
                            "qwen-vl", "bnpo"]
    assert "datasets" not in meta  # the run read local files: no Hub dataset id to name (format names are not ids)
    (index,) = meta["model-index"]
    assert index["name"] == "me/tiny-time-r1"
    by_dataset = {r["dataset"]["type"]: r for r in index["results"]}
    assert set(by_dataset) == {"charades_sta", "anet"}
    charades = by_dataset["charades_sta"]
    assert charades["task"]["type"] == "temporal-video-grounding"
    assert charades["dataset"]["name"] == "Charades-STA" and charades["dataset"]["split"] == "test"
    # the model-index holds the evaluations' metrics.json numbers (CHARADES, ANET), rounded to 2 decimals
    assert {m["type"]: m["value"] for m in charades["metrics"]} == {
        "R1@0.3": 61.25, "R1@0.5": 45.5, "R1@0.7": 20.75, "mIoU": 41.12}
    anet = by_dataset["anet"]
    assert (anet["dataset"]["name"], anet["dataset"]["split"]) == ("anet", "val_2")
    assert {m["type"]: m["value"] for m in anet["metrics"]} == {
        "R1@0.3": 50.0, "R1@0.5": 30.0, "R1@0.7": 12.5, "mIoU": 33.33}
    assert all(m["name"] == m["type"] for r in index["results"] for m in r["metrics"])
    body = (out / "README.md").read_text()
    assert "| Charades-STA | test | `charades_sta_test.txt` | 61.25 | 45.50 | 20.75 | 41.12 | 98.00 | 80 | 3 |" in body
    assert "| anet | val_2 | `val_2.json` | 50.00 | 30.00 | 12.50 | 33.33 | - | - | - |" in body
    assert "`tiou` x 1, `format` x 1" in body and "| KL beta | 0.04 (`k3` estimator) |" in body
    assert "| group size G | 8 |" in body and "1e-06 (linear, warmup 0)" in body
    assert "3 optimiser steps at this checkpoint (max_steps 3 planned)" in body
    assert "`train_2k5.json (local file)` (format `time_r1`)" in body and "/data/" not in body
    assert "accelerate launch --config_file launch/zero3_offload.yaml -m timegrpo.train --config " \
           "recipes/time_r1_qwen2_5_vl_7b.yaml\n" in body
    assert "-m timegrpo.train --config recipe.yaml" in body
    assert "Training log: 3 logged step(s) in `training_metrics.jsonl`; last: step 3, reward 0.8, iou 0.3." in body
    code = _card_code(out / "README.md")
    compile(code, "card", "exec")
    assert "AutoModelForImageTextToText.from_pretrained('me/tiny-time-r1'" in code
    assert "\nPROMPT = 'To accurately pinpoint the event \"{query}\" in the video, determine the precise" in code
    scope: dict = {}
    exec(next(line for line in code.splitlines() if line.startswith("PROMPT = ")), scope)
    assert scope["PROMPT"] == get_template("think").text  # the recipe's prompt_template, as in training
    assert "'nframes': 4" in code and "max_new_tokens=8" in code


def test_card_snippet_runs_on_a_real_video(run_dir, tmp_path, shared_data):
    """The card's python, pointed at the local folder, grounds a query in a real video with the tiny model."""
    out = tmp_path / "upload"
    assert main([*_push(run_dir, "--dry-run", "--out", str(out), "--check", "none")]) == 0
    video = shared_data / "videos" / "charades.mp4"
    code = _card_code(out / "README.md").replace("'me/tiny-time-r1'", repr(str(out)))
    code = code.replace("file:///path/to/video.mp4", f"file://{video}").replace(", device_map='auto'", "")
    scope: dict = {}
    exec(compile(code, "card", "exec"), scope)
    assert scope["inputs"]["pixel_values_videos"].shape[0] > 0
    assert scope["inputs"]["video_grid_thw"][0, 0].item() == 2  # 4 frames / temporal patch 2
    assert isinstance(scope["answer"], str)
    assert 1 <= scope["out"].shape[1] - scope["inputs"]["input_ids"].shape[1] <= 8


class FakeApi:
    """Records the HfApi calls `timegrpo push` makes, and what the upload folder held at upload time."""

    calls: list = []

    def __init__(self, token=None):
        FakeApi.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", {"repo_id": repo_id, **kw}))

    def create_branch(self, repo_id, **kw):
        FakeApi.calls.append(("create_branch", {"repo_id": repo_id, **kw}))

    def upload_folder(self, **kw):
        folder = Path(kw["folder_path"])
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        FakeApi.calls.append(("upload_folder", {**kw, "files": files}))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kw['repo_id']}/commit/abc123"})()


@pytest.fixture
def fake_hub(monkeypatch):
    FakeApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return FakeApi


def test_upload_calls_create_repo_then_upload_folder(run_dir, tmp_path, fake_hub, capsys):
    out = tmp_path / "upload"
    argv = _push(run_dir, "--out", str(out), "--check", "meta", "--token", "hf_test", "--private",
                 "--revision", "v1", "--commit-message", "first model")
    assert main(argv) == 0
    names = [c[0] for c in fake_hub.calls]
    assert names == ["init", "create_repo", "create_branch", "upload_folder"]
    _, create = fake_hub.calls[1]
    assert create == {"repo_id": "me/tiny-time-r1", "private": True, "exist_ok": True, "repo_type": "model",
                      "token": "hf_test"}
    assert fake_hub.calls[2][1]["branch"] == "v1"
    _, up = fake_hub.calls[3]
    assert up["repo_id"] == "me/tiny-time-r1" and Path(up["folder_path"]) == out
    assert up["revision"] == "v1" and up["commit_message"] == "first model" and up["token"] == "hf_test"
    assert up["files"] == UPLOADED and not set(TRAINING_STATE) & set(up["files"])
    assert "uploaded to https://huggingface.co/me/tiny-time-r1: https://huggingface.co/me/tiny-time-r1/commit/abc123" \
        in capsys.readouterr().out
    assert out.is_dir()  # a folder the user named is kept


def test_api_upload_to_temp_folder_is_cleaned_after_success(run_dir, fake_hub):
    result = push_checkpoint(run_dir / "out" / "checkpoint-3", "me/x", token="hf_test", check="none")
    assert result.url.endswith("/commit/abc123") and not result.folder.exists()
    assert [c[0] for c in fake_hub.calls] == ["init", "create_repo", "upload_folder"]
    assert fake_hub.calls[2][1]["commit_message"] == "Upload checkpoint-3 with timegrpo push"
    assert fake_hub.calls[2][1]["files"] == [f for f in UPLOADED if not f.startswith("eval/")]


def test_offline_upload_fails_clearly_and_calls_nothing(run_dir, tmp_path, fake_hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "upload"
    assert main(_push(run_dir, "--out", str(out), "--check", "none", "--token", "hf_test")) == 1
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in err and "--dry-run" in err and f"the folder is ready at {out}" in err
    assert fake_hub.calls == []
    assert _files(out) == UPLOADED  # kept, whole, for a retry


def test_missing_token_and_network_failure_are_reported(run_dir, tmp_path, fake_hub, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(_push(run_dir, "--out", str(tmp_path / "a"), "--check", "none")) == 1
    err = capsys.readouterr().err
    assert "no Hugging Face token" in err and "hf auth login" in err and "HF_TOKEN" in err
    assert fake_hub.calls == []

    def refuse(self, repo_id, **kw):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(FakeApi, "create_repo", refuse)
    assert main(_push(run_dir, "--out", str(tmp_path / "b"), "--check", "none", "--token", "hf_test")) == 1
    err = capsys.readouterr().err
    assert "upload to me/tiny-time-r1 failed: ConnectionError: Failed to resolve 'huggingface.co'" in err
    assert "Check the network" in err and "hf upload me/tiny-time-r1" in err


def test_load_check_catches_missing_weights(run_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "run" / "checkpoint-7"
    shutil.copytree(run_dir / "out" / "checkpoint-3", ckpt)
    shutil.copy(run_dir / "out" / "config.yaml", ckpt.parent / "config.yaml")
    weights = load_file(ckpt / "model.safetensors")
    dropped = sorted(k for k in weights if k.endswith("visual.merger.mlp.0.weight"))
    assert len(dropped) == 1
    save_file({k: v for k, v in weights.items() if k not in dropped}, ckpt / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(PushError, match=r"weights do not match the model: \{'missing_keys': \['.*merger\.mlp\.0"):
        push_checkpoint(ckpt, "me/x", dry_run=True, out=tmp_path / "o", check="meta")


def test_bad_inputs_are_clear_errors(run_dir, tmp_path, capsys):
    ckpt = run_dir / "out" / "checkpoint-3"
    lone = tmp_path / "lone"
    shutil.copytree(ckpt, lone, ignore=shutil.ignore_patterns("state"))
    with pytest.raises(PushError, match=r"no config.yaml in .*lone .* pass the run's recipe with --config"):
        push_checkpoint(lone, "me/x", dry_run=True)
    with pytest.raises(PushError, match="has no config.json: pass a checkpoint-N folder"):
        push_checkpoint(run_dir / "out", "me/x", dry_run=True)
    with pytest.raises(PushError, match="not a valid repo id"):
        push_checkpoint(ckpt, "not a repo id", dry_run=True)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PushError, match="exists and is not empty"):
        push_checkpoint(ckpt, "me/x", dry_run=True, out=tmp_path / "full", check="none")
    with pytest.raises(PushError, match="is inside the checkpoint"):
        push_checkpoint(ckpt, "me/x", dry_run=True, out=ckpt / "upload", check="none")
    (tmp_path / "ev").mkdir()
    with pytest.raises(PushError, match=r"ev has no metrics.json: pass a folder written by `timegrpo eval"):
        push_checkpoint(ckpt, "me/x", dry_run=True, eval_dirs=[tmp_path / "ev"])
    (tmp_path / "ev" / "metrics.json").write_text(json.dumps({"MR-full-mAP": 3.0}))
    with pytest.raises(PushError, match="none of R1@0.3, R1@0.5, R1@0.7, mIoU found"):
        push_checkpoint(ckpt, "me/x", dry_run=True, eval_dirs=[tmp_path / "ev"])
    evals = [str(run_dir / "evals" / "charades"), f"charades_sta={run_dir / 'evals' / 'anet'}"]
    assert main(["push", str(ckpt), "--repo-id", "me/x", "--dry-run", "--eval", *evals]) == 1
    assert "two evaluations are both named 'charades_sta'" in capsys.readouterr().err


def test_sft_warm_start_card_and_base_model_through_local_folders(run_dir, tmp_path):
    """An SFT run (``sft/config.yaml`` + ``sft/final``) is described as SFT; a run started from it finds the Hub
    base model through the SFT folder's config; a run from a bare local folder gets no base_model and says so."""
    ckpt = run_dir / "out" / "checkpoint-3"
    sft = tmp_path / "sft"
    shutil.copytree(ckpt, sft / "final", ignore=shutil.ignore_patterns("state", "rng_state.pth"))
    cfg = load_recipe(RECIPE, [*OVERRIDES, "--sft.max_steps", "40", "--sft.learning_rate", "2e-5"])
    save_config(cfg, sft / "config.yaml", header=f"timegrpo sft --config {RECIPE.name}")
    result = push_checkpoint(sft / "final", "me/sft", dry_run=True, out=tmp_path / "a", check="none")
    meta, body = metadata_load(result.folder / "README.md"), (result.folder / "README.md").read_text()
    assert meta["tags"] == ["timegrpo", "sft", "temporal-video-grounding", "video-llm", "qwen-vl"]
    assert "model-index" not in meta
    assert meta["base_model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert "after supervised fine-tuning" in body and "| method | supervised fine-tuning" in body
    assert "| learning rate | 2e-05 (cosine, warmup 0.03) |" in body and "| steps | final model (max_steps 40) |" in body
    assert "KL beta" not in body and "Not evaluated yet" in body
    assert "timegrpo sft --config recipe.yaml" in body

    grpo = tmp_path / "grpo"
    shutil.copytree(ckpt, grpo / "checkpoint-9", ignore=shutil.ignore_patterns("state"))
    save_config(load_recipe(RECIPE, [*OVERRIDES, "--model.model_name_or_path", str(sft / "final")]),
                grpo / "config.yaml")
    meta = metadata_load(push_checkpoint(grpo / "checkpoint-9", "me/g", dry_run=True, out=tmp_path / "b",
                                         check="none").folder / "README.md")
    assert meta["base_model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and meta["license"] == "apache-2.0"

    # a local model whose README names its base (the first upload folder, holding a copy of the SFT card)
    save_config(load_recipe(RECIPE, [*OVERRIDES, "--model.model_name_or_path", str(tmp_path / "a")]),
                grpo / "config.yaml")
    meta = metadata_load(push_checkpoint(grpo / "checkpoint-9", "me/g", dry_run=True, out=tmp_path / "b2",
                                         check="none").folder / "README.md")
    assert meta["base_model"] == "Qwen/Qwen2.5-VL-7B-Instruct"

    bare = tmp_path / "bare" / "model"
    shutil.copytree(ckpt, bare, ignore=shutil.ignore_patterns("state"))
    save_config(load_recipe(RECIPE, [*OVERRIDES, "--model.model_name_or_path", str(bare)]), grpo / "config.yaml")
    result = push_checkpoint(grpo / "checkpoint-9", "me/g", dry_run=True, out=tmp_path / "c", check="none")
    meta = metadata_load(result.folder / "README.md")
    assert "base_model" not in meta and meta["license"] == "other" and meta["license_name"] == "same-as-base-model"
    assert "pass --base-model ID" in result.checks["base_model"]
    meta = metadata_load(push_checkpoint(grpo / "checkpoint-9", "me/g", dry_run=True, out=tmp_path / "d",
                                         check="none", base_model="Qwen/Qwen2-VL-7B-Instruct",
                                         license="mit").folder / "README.md")
    assert meta["base_model"] == "Qwen/Qwen2-VL-7B-Instruct" and meta["license"] == "mit"


def test_video_opd_card_names_the_method(run_dir, tmp_path):
    """A Video-OPD run is tagged, described and tabled with the method's names, and names its teacher."""
    run = tmp_path / "opd"
    shutil.copytree(run_dir / "out" / "checkpoint-3", run / "checkpoint-2", ignore=shutil.ignore_patterns("state"))
    opd = REPO / "recipes" / "video_opd_qwen3_vl_8b.yaml"
    cfg = load_recipe(opd, ["--data.train_file", "data/x.json"])
    save_config(cfg, run / "config.yaml", header=opd.read_text().splitlines()[0].lstrip("# "))
    result = push_checkpoint(run / "checkpoint-2", "me/opd", dry_run=True, out=tmp_path / "o", check="none")
    meta, body = metadata_load(result.folder / "README.md"), (result.folder / "README.md").read_text()
    assert meta["tags"] == ["timegrpo", "video-opd", "reinforcement-learning", "temporal-video-grounding",
                            "video-llm", "qwen-vl"]
    assert meta["base_model"] == "Qwen/Qwen3-VL-8B-Instruct"
    assert "after RL post-training (Video-OPD) with timegrpo" in body
    assert "| method | Video-OPD (on-policy distillation); loss_type `" in body
    assert f"| teacher | `{cfg.train.teacher_model_name_or_path}` |" in body


def test_eval_folder_naming(tmp_path):
    def folder(name, metrics, config=None):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({"R1@0.5": 10.0, "mIoU": 9.5, **metrics}))
        if config is not None:
            (d / "eval_config.json").write_text(json.dumps(config))
        return d

    qvh = read_eval(folder("e1", {"benchmark": "qvhighlights", "MR-full-mAP": 3.0}))
    assert (qvh.name, qvh.title, qvh.metrics["MR-full-mAP"]) == ("qvhighlights", "QVHighlights", 3.0)
    stem = read_eval(folder("e2", {"benchmark": "grounding"}, {"annotations": {"path": "/x/my_split.jsonl"}}))
    assert (stem.name, stem.annotations, stem.split) == ("my_split", "my_split.jsonl", None)
    bare = read_eval(folder("e3", {}))
    assert (bare.name, bare.metrics) == ("e3", {"R1@0.5": 10.0, "mIoU": 9.5})
    named = read_eval(f"tacos={tmp_path / 'e3'}")
    assert (named.name, named.title, named.path) == ("tacos", "TACoS", tmp_path / "e3")
