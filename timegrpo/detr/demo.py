"""The end-to-end GIRL-DETR demo and prediction files.

:func:`run_detr_demo` synthesises the feature benchmark, trains the supervised stage, runs the gradient-isolated
RL stage (and, as a control, the same number of epochs of the *supervised* losses on the same heads), and
writes ``report.json``::

    supervised / rl / control_supervised_heads: R1@0.3, R1@0.5, R1@0.7, mIoU on the held-out (test) split
    changed_parameters: names of parameters the RL stage changed (all inside span/class/IoU heads)
    floors: a constant window (train median center/width) and the supervised model with shuffled text
    seconds: wall time of each part
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from timegrpo.detr.config import DetrConfig
from timegrpo.detr.features import FeatureDataset, load_split
from timegrpo.detr.rl import run_rl
from timegrpo.detr.synth import synthesize
from timegrpo.detr.train import (
    Log,
    evaluate,
    load_checkpoint,
    model_from_checkpoint,
    predict_dataset,
    setup_torch,
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

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.base[i])
        item["text"] = self.base[int(self.perm[i])]["text"]
        return item


def _test_metrics(path: str | Path, test: Any, device: torch.device) -> dict[str, float]:
    return evaluate(model_from_checkpoint(load_checkpoint(path)).to(device), test, device)


def _print_table(report: dict[str, Any], log: Log) -> None:
    rows = [("constant window", report["floors"]["constant_window"]),
            ("supervised, shuffled text", report["floors"]["supervised_shuffled_text"]),
            ("supervised", report["supervised"]), ("+ GIRL RL (heads only)", report["rl"])]
    if "control_supervised_heads" in report:
        rows.append(("+ supervised on heads (control)", report["control_supervised_heads"]))
    log(f"{'held-out ' + report['split']:34s}  R1@0.5  R1@0.7    mIoU")
    for name, m in rows:
        log(f"{name:34s}  {m['R1@0.5']:6.2f}  {m['R1@0.7']:6.2f}  {m['mIoU']:6.2f}")


def run_detr_demo(out: Path, cfg: DetrConfig, log: Log = print, control: bool = True) -> dict[str, Any]:
    """Synthesise -> supervised -> RL (-> control) on ``cfg``; write and return ``out/report.json``."""
    t_start = time.time()
    out = out.expanduser().resolve()
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
    report: dict[str, Any] = {"split": "test", "queries": len(test), "supervised": evaluate(sup_model, test, device)}
    report["floors"] = {"constant_window": constant_window_metrics(train, test),
                        "supervised_shuffled_text": evaluate(sup_model, ShuffledText(test, cfg.seed), device)}
    t = time.time()
    rl = run_rl(cfg, log)
    seconds["rl"] = round(time.time() - t, 1)
    report["rl"] = _test_metrics(rl.checkpoint, test, device)
    report["changed_parameters"] = rl.changed_parameters
    report["trainable_parameters"] = rl.trainable_parameters
    if control:
        t = time.time()
        cfg.rl.objective = "supervised"
        ctl = run_rl(cfg, log, out_name="rl_control")
        cfg.rl.objective = "girl"
        seconds["control"] = round(time.time() - t, 1)
        report["control_supervised_heads"] = _test_metrics(ctl.checkpoint, test, device)
    seconds["total"] = round(time.time() - t_start, 1)
    report["seconds"] = seconds
    report["supervised_best_epoch"] = sup["best_epoch"]
    _print_table(report, log)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(f"wrote {out / 'report.json'} ({seconds['total']} s)")
    return report
