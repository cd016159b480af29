"""Supervised stage: EMA, checkpoints and resume, predictions in the official schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from timegrpo.detr.demo import predict_split
from timegrpo.detr.features import load_split
from timegrpo.detr.train import (
    EMA,
    batches,
    evaluate,
    load_checkpoint,
    model_from_checkpoint,
    train_supervised,
)


def test_ema_update_by_hand() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    assert ema.module.weight.item() == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)
    assert not ema.module.weight.requires_grad


def test_resume_reaches_the_same_weights(synth_root: Path, tmp_path: Path, make_config) -> None:
    quiet = lambda s: None  # noqa: E731
    straight = make_config(synth_root, out_root=str(tmp_path / "a"), train={"epochs": 2})
    train_supervised(straight, quiet)
    first = make_config(synth_root, out_root=str(tmp_path / "b"), train={"epochs": 1})
    train_supervised(first, quiet)
    resumed = make_config(synth_root, out_root=str(tmp_path / "b"), train={"epochs": 2})
    logs: list[str] = []
    train_supervised(resumed, logs.append)
    assert any("resumed from" in line and "at epoch 1" in line for line in logs)
    a = load_checkpoint(tmp_path / "a/run/supervised/last.ckpt")
    b = load_checkpoint(tmp_path / "b/run/supervised/last.ckpt")
    assert a["epoch"] == b["epoch"] == 1
    for key in ("model", "ema"):
        for name, t in a[key].items():
            torch.testing.assert_close(t, b[key][name], rtol=0, atol=0, msg=f"{key}.{name}")
    # the resumed run appended epoch 1 to the log, with the losses and validation of the straight run
    logs = [[{k: v for k, v in json.loads(x).items() if k != "seconds"}
             for x in (tmp_path / run / "run/supervised/log.jsonl").read_text().splitlines()] for run in "ab"]
    assert [r["epoch"] for r in logs[1]] == [0, 1]
    assert logs[1] == logs[0]


def test_training_lowers_the_loss_and_best_is_the_ema(synth_root: Path, tmp_path: Path, make_config) -> None:
    cfg = make_config(synth_root, out_root=str(tmp_path), train={"epochs": 3})
    result = train_supervised(cfg, lambda s: None)
    log = [json.loads(x) for x in (tmp_path / "run/supervised/log.jsonl").read_text().splitlines()]
    assert log[-1]["total"] < log[0]["total"]
    best = load_checkpoint(result["best"])
    last = load_checkpoint(tmp_path / "run/supervised/last.ckpt")
    if best["epoch"] == last["epoch"]:
        for name, t in best["model"].items():
            assert torch.equal(t, last["ema"][name])
    val = load_split(cfg.data, cfg.resolve, "val", require_windows=True)
    assert evaluate(model_from_checkpoint(best), val, torch.device("cpu")) == pytest.approx(result["metrics"])


def test_predictions_follow_the_official_schema(synth_root: Path, tmp_path: Path, make_config) -> None:
    cfg = make_config(synth_root, out_root=str(tmp_path), train={"epochs": 1, "eval_every": 0},
                      predict={"split": "test", "max_windows": 5})
    train_supervised(cfg, lambda s: None)
    path, metrics = predict_split(cfg)
    assert path == tmp_path / "run" / "predictions_test.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines()]
    gt = {json.loads(x)["qid"]: json.loads(x) for x in (synth_root / "annotations/test.jsonl").read_text().splitlines()}
    assert [r["qid"] for r in records] == list(gt)  # same order, integer qids stay integers
    for r in records:
        assert set(r) == {"qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"}
        assert r["vid"] == gt[r["qid"]]["vid"] and r["query"] == gt[r["qid"]]["query"]
        windows = r["pred_relevant_windows"]
        assert len(windows) == 5 and all(len(w) == 3 and 0 <= w[0] <= w[1] <= gt[r["qid"]]["duration"] for w in windows)
        assert [w[2] for w in windows] == sorted((w[2] for w in windows), reverse=True)
        n_clips = len(np.load(synth_root / "features/f0" / f"{r['vid']}.npz")["features"])
        assert len(r["pred_saliency_scores"]) == n_clips
    assert set(metrics) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}


def test_patience_stops_on_the_plateau_and_a_resumed_run_stays_stopped(synth_root: Path, tmp_path: Path,
                                                                       make_config) -> None:
    # min_delta 1000: only the first validation makes a best, so patience 2 stops after epoch 2 (0-based)
    cfg = make_config(synth_root, out_root=str(tmp_path), train={"epochs": 30, "patience": 2, "min_delta": 1000.0})
    logs: list[str] = []
    result = train_supervised(cfg, logs.append)
    assert (result["epochs_run"], result["stop_reason"], result["validated"]) == (3, "plateau", True)
    assert any("stopped after epoch 2 (patience 2)" in line for line in logs)
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "run/supervised/log.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]
    summary = load_checkpoint(result["best"])["train_summary"]
    assert summary == {k: result[k] for k in ("best_epoch", "epochs_run", "stop_reason", "validated")}
    assert summary["best_epoch"] == load_checkpoint(result["best"])["epoch"] == 0
    again = train_supervised(make_config(synth_root, out_root=str(tmp_path),
                                         train={"epochs": 40, "patience": 2, "min_delta": 1000.0}), logs.append)
    assert (again["epochs_run"], again["stop_reason"]) == (3, "plateau")
    assert len((tmp_path / "run/supervised/log.jsonl").read_text().splitlines()) == 3  # no epoch was added


def test_without_patience_the_budget_is_the_rule(synth_root: Path, tmp_path: Path, make_config) -> None:
    result = train_supervised(make_config(synth_root, out_root=str(tmp_path), train={"epochs": 2}), lambda s: None)
    assert (result["epochs_run"], result["stop_reason"]) == (2, "budget")


def test_loader_workers_give_the_same_batches_and_the_cache_is_sized_to_the_split(synth_root: Path,
                                                                                    make_config) -> None:
    cfg = make_config(synth_root)
    serial = load_split(cfg.data, cfg.resolve, "val", require_windows=True)
    cfg = make_config(synth_root, data={"num_workers": 2})
    parallel = load_split(cfg.data, cfg.resolve, "val", require_windows=True)
    a = list(batches(serial, 4, shuffle=True, seed=3, epoch=1))
    b = list(batches(parallel, 4, shuffle=True, seed=3, epoch=1))
    assert [x.samples for x in a] == [x.samples for x in b]
    for x, y in zip(a, b):
        assert torch.equal(x.video, y.video) and torch.equal(x.text, y.text) and torch.equal(x.spans, y.spans)
    vids = {s.vid for s in parallel.samples}
    assert len(parallel.store._cache) == len(vids)  # preloaded in this process before the workers started
    assert len(serial.store._cache) == len(vids)  # cache_videos None: every video of the split stays
    small = make_config(synth_root, data={"cache_videos": 1})
    one = load_split(small.data, small.resolve, "val", require_windows=True)
    list(batches(one, 4, shuffle=False))
    assert list(one.store._cache) == [one.samples[-1].vid]  # LRU of one video: the last one read
