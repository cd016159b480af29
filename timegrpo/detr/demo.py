"""The end-to-end GIRL-DETR demo and prediction files.

:func:`run_detr_demo` runs, once per seed of ``demo.seeds`` (the seed sets the synthetic data, the initialisation,
the batch order and the RL sampling): synthesise the feature benchmark, train the supervised stage (to its
plateau with ``train.patience``), then from its best checkpoint the gradient-isolated RL stage and the control
(the same epochs of the *supervised* losses on the same heads), via :func:`timegrpo.detr.compare.compare_rl_control`.
It writes ``OUT/seed{s}/report.json`` per seed and ``OUT/report.json``::

    supervised / rl / control: R1@0.3, R1@0.5, R1@0.7, mIoU on the test split, mean over seeds
    rl_minus_control: mIoU, mIoU_se, R1@0.7, R1@0.7_se (paired over test queries, averaged over seeds: see
        timegrpo.detr.compare), between_seed_sd, per_seed, method
    supervised_best_epoch, supervised_epochs, supervised_still_improving: per seed (0-based best epoch, epochs run)
    seeds, changed_parameters (all inside span/class/IoU heads), trainable_parameters
    floors: a constant window (train median center/width) and the supervised model with shuffled text
    seconds: wall time in total and per seed
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from timegrpo.config import core
from timegrpo.config.core import to_dict
from timegrpo.detr.compare import combine_seeds, compare_rl_control
from timegrpo.detr.config import DetrConfig
from timegrpo.detr.features import FeatureDataset, load_split
from timegrpo.detr.synth import synthesize
from timegrpo.detr.train import (
    Log,
    evaluate,
    load_checkpoint,
    model_from_checkpoint,
    predict_dataset,
    setup_torch,
    still_improving,
    top1_ious,
    train_supervised,
    write_jsonl,
)
from timegrpo.metrics import grounding_metrics
from timegrpo.spans import temporal_iou


def default_checkpoint(cfg: DetrConfig) -> Path:
    """``predict.checkpoint``, else the RL checkpoint when it exists, else the supervised best."""
    if cfg.predict.checkpoint:
        return Path(cfg.predict.checkpoint).expanduser()
    rl = cfg.run_dir() / "rl" / "final.ckpt"
    return rl if rl.is_file() else cfg.run_dir() / "supervised" / "best.ckpt"


def predict_split(cfg: DetrConfig) -> tuple[Path, dict[str, float] | None]:
    """Write ``predict.split`` predictions in the official jsonl schema; metrics when every query has GT."""
    device = setup_torch(cfg)
    ds = load_split(cfg.data, cfg.resolve, cfg.predict.split, require_windows=False)
    print(ds.report.summary())
    model = model_from_checkpoint(load_checkpoint(default_checkpoint(cfg))).to(device)
    records = predict_dataset(model, ds, device, max_windows=cfg.predict.max_windows, score=cfg.predict.score)
    out = Path(cfg.predict.output).expanduser() if cfg.predict.output else \
        cfg.run_dir() / f"predictions_{cfg.predict.split}.jsonl"
    write_jsonl(out, records)
    has_gt = all(s.windows for s in ds.samples)
    return out, grounding_metrics(top1_ious(records, ds)) if has_gt else None


def constant_window_metrics(train: FeatureDataset, test: FeatureDataset) -> dict[str, float]:
    """The floor: every test query gets the train median (center, width), scaled to its own feature length."""
    spans = np.concatenate([train[i]["spans"].numpy() for i in range(len(train))])
    c, w = np.median(spans[:, 0]), np.median(spans[:, 1])
    ious = []
    for s in test.samples:
        total = test.store.length(s.vid) * test.store.cfg.clip_len
        ious.append(temporal_iou(((c - w / 2) * total, (c + w / 2) * total), s.windows))
    return grounding_metrics(ious)


class ShuffledText(torch.utils.data.Dataset):
    """A dataset whose queries get another query's text features (a fixed permutation): the text ablation."""

    def __init__(self, base: FeatureDataset, seed: int) -> None:
        self.base, self.samples, self.store = base, base.samples, base.store
        self.perm = np.random.default_rng(seed).permutation(len(base))

    def __len__(self) -> int:
        return len(self.base)

    def preload(self) -> None:
        self.base.preload()

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.base[i])
        item["text"] = self.base[int(self.perm[i])]["text"]
        return item


def _print_table(report: dict[str, Any], log: Log) -> None:
    rows = [("constant window", report["floors"]["constant_window"]),
            ("supervised, shuffled text", report["floors"]["supervised_shuffled_text"]),
            ("supervised", report["supervised"]), ("+ GIRL RL (heads only)", report["rl"])]
    if "control" in report:
        rows.append(("+ supervised on heads (control)", report["control"]))
    log(f"{'test, mean of ' + str(len(report['seeds'])) + ' seeds':34s}  R1@0.5  R1@0.7    mIoU")
    for name, m in rows:
        log(f"{name:34s}  {m['R1@0.5']:6.2f}  {m['R1@0.7']:6.2f}  {m['mIoU']:6.2f}")
    if "rl_minus_control" in report:
        d = report["rl_minus_control"]
        log(f"RL - control (paired over {d['queries']} test queries, averaged over seeds): mIoU {d['mIoU']:+.2f} "
            f"+- {d['mIoU_se']:.2f}, R1@0.7 {d['R1@0.7']:+.2f} +- {d['R1@0.7_se']:.2f}")
    log("supervised best epoch / epochs run, per seed: "
        + ", ".join(f"{b + 1}/{n}" for b, n in zip(report["supervised_best_epoch"], report["supervised_epochs"])))
    if any(report["supervised_still_improving"]):
        log("warning: a supervised run was still improving (best epoch in its last 10%): raise train.epochs")


def run_seed(out: Path, cfg: DetrConfig, log: Log = print, control: bool = True) -> dict[str, Any]:
    """One seed of the demo under ``out``: synthesise -> supervised -> RL (and control); write and return
    ``out/report.json``."""
    t_start = time.time()
    data_dir = out / "data"
    summary = synthesize(data_dir, cfg.synth)
    log(f"synthetic benchmark: {summary['queries']} queries in {data_dir}")
    cfg.data.root, cfg.out_root, cfg.train.resume, cfg.rl.init = str(data_dir), str(out), False, None
    seconds = {"synthesize": round(time.time() - t_start, 1)}
    t = time.time()
    sup = train_supervised(cfg, log)
    seconds["supervised"] = round(time.time() - t, 1)
    device = setup_torch(cfg)
    test = load_split(cfg.data, cfg.resolve, "test", require_windows=True)
    train = load_split(cfg.data, cfg.resolve, "train", require_windows=True)
    sup_model = model_from_checkpoint(load_checkpoint(sup["best"])).to(device)
    floors = {"constant_window": constant_window_metrics(train, test),
              "supervised_shuffled_text": evaluate(sup_model, ShuffledText(test, cfg.seed), device)}
    t = time.time()
    report = compare_rl_control(cfg, log, control=control)
    seconds["rl_and_control"] = round(time.time() - t, 1)
    seconds["total"] = round(time.time() - t_start, 1)
    report.update(seed=cfg.seed, floors=floors, seconds=seconds, supervised_best_epoch=sup["best_epoch"],
                  supervised_epochs=sup["epochs_run"], supervised_stop=sup["stop_reason"],
                  supervised_still_improving=still_improving(sup["best_epoch"], sup["epochs_run"],
                                                             cfg.rl.converged_tail))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _seed_job(out: str, cfg_dict: dict[str, Any], control: bool) -> dict[str, Any]:
    """:func:`run_seed` in a worker process, logging to ``out/log.txt``."""
    cfg = core.from_dict(DetrConfig, cfg_dict)
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out) / "log.txt", "w", encoding="utf-8") as f:

        def log(line: str) -> None:
            f.write(line + "\n")
            f.flush()

        return run_seed(Path(out), cfg, log, control)


def _mean_metrics(reports: list[dict[str, Any]], key: str) -> dict[str, float]:
    return {m: float(np.mean([r[key][m] for r in reports])) for m in reports[0][key]}


def aggregate(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The demo's ``report.json`` from the per-seed reports (see the module docstring)."""
    out: dict[str, Any] = {"split": reports[0]["split"], "queries": [r["queries"] for r in reports],
                           "seeds": [r["seed"] for r in reports], "aggregate": "mean over seeds"}
    for key in ("supervised", "rl", "control"):
        if key in reports[0]:
            out[key] = _mean_metrics(reports, key)
    if "rl_minus_control" in reports[0]:
        out["rl_minus_control"] = combine_seeds([r["rl_minus_control"] for r in reports])
    out["floors"] = {k: _mean_metrics([r["floors"] for r in reports], k) for k in reports[0]["floors"]}
    for key in ("supervised_best_epoch", "supervised_epochs", "supervised_stop", "supervised_still_improving"):
        out[key] = [r[key] for r in reports]
    out["changed_parameters"] = sorted({n for r in reports for n in r["changed_parameters"]})
    out["trainable_parameters"] = reports[0]["trainable_parameters"]
    out["per_seed"] = {str(r["seed"]): {k: r[k] for k in ("supervised", "rl", "control", "rl_minus_control")
                                        if k in r} for r in reports}
    return out


def run_detr_demo(out: Path, cfg: DetrConfig, log: Log = print, control: bool = True) -> dict[str, Any]:
    """:func:`run_seed` for every seed of ``demo.seeds`` (``demo.processes`` side by side) under ``out/seed{s}``;
    write and return ``out/report.json``."""
    t_start = time.time()
    out = out.expanduser().resolve()
    cfgs = []
    for seed in cfg.demo.seeds:
        c = copy.deepcopy(cfg)
        c.seed, c.synth.seed = seed, seed
        cfgs.append(c)
    if cfg.demo.processes > 1 and len(cfgs) > 1:
        log(f"running seeds {cfg.demo.seeds} in {cfg.demo.processes} processes (logs: {out}/seed*/log.txt)")
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(cfg.demo.processes, len(cfgs)), mp_context=ctx) as pool:
            jobs = [pool.submit(_seed_job, str(out / f"seed{c.seed}"), to_dict(c), control) for c in cfgs]
            reports = [job.result() for job in jobs]
    else:
        reports = [run_seed(out / f"seed{c.seed}", c, log, control) for c in cfgs]
    report = aggregate(reports)
    report["seconds"] = {"total": round(time.time() - t_start, 1),
                         "per_seed": [r["seconds"]["total"] for r in reports]}
    _print_table(report, log)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(f"wrote {out / 'report.json'} ({report['seconds']['total']} s)")
    return report
