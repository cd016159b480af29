"""Supervised GIRL-DETR training, evaluation and prediction files.

The loop: shuffled batches (order fixed by ``seed`` and the epoch, so a resumed run sees the same batches),
:func:`timegrpo.detr.losses.set_criterion`, AdamW, gradient-norm clipping, and an EMA of the weights updated
every step. Evaluation and ``best.ckpt`` use the EMA weights. ``last.ckpt`` (model, EMA, optimizer, scheduler,
epoch) is written after every epoch and a run with ``train.resume`` continues from it.

Files under ``{run_dir}/supervised/``: ``last.ckpt``, ``best.ckpt`` (EMA weights of the best validation epoch,
by ``mIoU``; the last epoch when there is no validation split), ``log.jsonl``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from timegrpo.config.core import to_dict
from timegrpo.data.order import epoch_permutation
from timegrpo.detr.config import DetrConfig, DetrModelConfig
from timegrpo.detr.features import FeatureDataset, load_split, make_collate
from timegrpo.detr.losses import set_criterion
from timegrpo.detr.model import GirlDetr, rank_windows
from timegrpo.metrics import grounding_metrics
from timegrpo.spans import temporal_iou

Log = Callable[[str], None]


def pick_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def setup_torch(cfg: DetrConfig) -> torch.device:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    return pick_device(cfg.device)


class EMA:
    """Exponential moving average of a model's parameters and buffers: ``ema = decay * ema + (1 - decay) * p``."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for e, p in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)
            else:
                e.copy_(p)


def batches(dataset: FeatureDataset, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0) -> DataLoader:
    """A DataLoader whose order depends only on ``(seed, epoch)``, with ``data.num_workers`` workers (the
    batches are the same with any number; with workers the split's features are preloaded into the cache first)."""
    order = epoch_permutation(seed, epoch, len(dataset), seed_stride=100_003) if shuffle else None
    workers = dataset.store.cfg.num_workers
    if workers and hasattr(dataset, "preload"):
        dataset.preload()
    return DataLoader(dataset, batch_size=batch_size, sampler=order,
                      collate_fn=make_collate(dataset.store.cfg.clip_len), num_workers=workers)


def load_data(cfg: DetrConfig, splits: tuple[str, ...], log: Log) -> dict[str, FeatureDataset]:
    """The requested splits that are set in the config, with their anomaly reports logged."""
    out = {}
    for split in splits:
        if getattr(cfg.data, split) is None:
            continue
        ds = load_split(cfg.data, cfg.resolve, split, require_windows=True)
        log(ds.report.summary())
        out[split] = ds
    return out


def build_model(model_cfg: DetrModelConfig, video_dim: int, text_dim: int, seed: int) -> GirlDetr:
    torch.manual_seed(seed)
    return GirlDetr(model_cfg, video_dim, text_dim)


def save_checkpoint(path: Path, **state: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_checkpoint(ckpt: dict[str, Any]) -> GirlDetr:
    """Rebuild the model a checkpoint was saved from (its own model config and input widths) and load it."""
    model_cfg = DetrModelConfig(**ckpt["config"]["model"])
    model = GirlDetr(model_cfg, ckpt["video_dim"], ckpt["text_dim"])
    model.load_state_dict(ckpt["model"])
    return model


@torch.no_grad()
def predict_dataset(model: GirlDetr, dataset: FeatureDataset, device: torch.device, batch_size: int = 64,
                    max_windows: int = 10, score: str = "fg") -> list[dict[str, Any]]:
    """Predictions in the official Moment-DETR jsonl schema, one dict per query:
    ``qid, query, vid, pred_relevant_windows [[s, e, score], ...] (best first), pred_saliency_scores``."""
    model.eval()
    clip_len = dataset.store.cfg.clip_len
    records = []
    for batch in batches(dataset, batch_size, shuffle=False):
        batch = batch.to(device)
        out = model(batch.video, batch.video_mask, batch.text, batch.text_mask)
        ranked = rank_windows(out, batch.video_mask, clip_len, [s.duration for s in batch.samples], score)
        sal = out.saliency
        for b, s in enumerate(batch.samples):
            n = int(batch.video_mask[b].sum())
            records.append({
                "qid": _official_qid(s.qid), "query": s.query, "vid": s.vid,
                "pred_relevant_windows": [[round(a, 4), round(e, 4), round(sc, 6)] for a, e, sc in ranked[b][:max_windows]],
                "pred_saliency_scores": [] if sal is None else [round(float(x), 6) for x in sal[b, :n]],
            })
    return records


def _official_qid(qid: str) -> int | str:
    """Integer qids stay integers in the written file (the official evaluation compares them as json values).

    >>> _official_qid("2579"), _official_qid("s30-d52_0"), _official_qid("007")
    (2579, 's30-d52_0', '007')
    """
    return int(qid) if qid.isdigit() and str(int(qid)) == qid else qid


def top1_ious(records: list[dict[str, Any]], dataset: FeatureDataset) -> list[float]:
    """IoU of each query's first predicted window with its ground truth (:func:`timegrpo.spans.temporal_iou`)."""
    gts = {s.qid: s.windows for s in dataset.samples}
    return [temporal_iou(r["pred_relevant_windows"][0][:2] if r["pred_relevant_windows"] else None,
                         gts[str(r["qid"])]) for r in records]


def evaluate(model: GirlDetr, dataset: FeatureDataset, device: torch.device, batch_size: int = 64,
             ) -> dict[str, float]:
    """R1@{0.3,0.5,0.7} and mIoU (percent) of the top-1 window, via :func:`timegrpo.metrics.grounding_metrics`."""
    return grounding_metrics(top1_ious(predict_dataset(model, dataset, device, batch_size, 1), dataset))


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def append_jsonl(path: Path, rec: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def _train_epoch(model: GirlDetr, ema: EMA, opt: torch.optim.Optimizer, data: FeatureDataset, cfg: DetrConfig,
                 device: torch.device, epoch: int) -> dict[str, float]:
    model.train()
    torch.manual_seed(cfg.seed * 7919 + epoch)  # dropout: a resumed epoch draws the same masks
    sums: dict[str, float] = {}
    n = 0
    for batch in batches(data, cfg.train.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch):
        batch = batch.to(device)
        out = model(batch.video, batch.video_mask, batch.text, batch.text_mask)
        loss, logs = set_criterion(out, batch.spans, batch.span_mask, batch.saliency, batch.video_mask, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        ema.update(model)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


def still_improving(best_epoch: int, epochs_run: int, tail: float = 0.1) -> bool:
    """True when the best epoch (0-based) lies in the last ``tail`` fraction of ``epochs_run`` epochs, i.e.
    ``best_epoch + 1 > (1 - tail) * epochs_run``: the run stopped while it was still improving.

    >>> still_improving(23, 24), still_improving(21, 24), still_improving(20, 24), still_improving(40, 60)
    (True, True, False, False)
    """
    return best_epoch + 1 > (1 - tail) * epochs_run


def update_best(best: dict[str, Any], epoch: int, metrics: dict[str, float], min_delta: float) -> bool:
    """Fold one validation into ``best`` (``score``/``epoch``/``metrics``): this epoch becomes the best when its
    val mIoU beats the best so far by more than ``min_delta`` points (so a rise within the noise neither moves
    ``best.ckpt`` nor resets patience, and the best epoch is where patience counts from). True when it did.

    >>> b = {"score": -1.0, "epoch": -1, "metrics": {}}
    >>> [update_best(b, e, {"mIoU": x}, 0.5) for e, x in enumerate([50.0, 50.3, 50.9, 50.8])]
    [True, False, True, False]
    >>> b["epoch"], b["score"]
    (2, 50.9)
    """
    if best["epoch"] >= 0 and metrics["mIoU"] <= best["score"] + min_delta:  # the first validation is a best
        return False
    best.update(score=metrics["mIoU"], epoch=epoch, metrics=metrics)
    return True


def _plateaued(best: dict[str, Any], epoch: int, patience: int | None) -> bool:
    """No new best in the last ``patience`` epochs (always False without patience or before any validation)."""
    return patience is not None and best["epoch"] >= 0 and epoch - best["epoch"] >= patience


def _finish(out: Path, best: dict[str, Any], epochs_run: int, stop: str, validated: bool) -> dict[str, Any]:
    """Record how the run ended in ``best.ckpt`` (what ``detr rl`` checks) and return the summary."""
    summary = {"best_epoch": best["epoch"], "epochs_run": epochs_run, "stop_reason": stop, "validated": validated}
    if (out / "best.ckpt").is_file():
        save_checkpoint(out / "best.ckpt", **{**load_checkpoint(out / "best.ckpt"), "train_summary": summary})
    return {"best": str(out / "best.ckpt"), "metrics": best["metrics"], **summary}


def train_supervised(cfg: DetrConfig, log: Log = print) -> dict[str, Any]:
    """Run (or resume) the supervised stage until ``train.epochs`` or, with ``train.patience``, until val mIoU
    has plateaued; returns ``{"best": path, "metrics": val metrics of best, "best_epoch", "epochs_run",
    "stop_reason": budget | plateau, "validated"}`` (also stored in ``best.ckpt`` as ``train_summary``)."""
    device = setup_torch(cfg)
    data = load_data(cfg, ("train", "val"), log)
    train, val = data["train"], data.get("val")
    out = cfg.run_dir() / "supervised"
    model = build_model(cfg.model, train.video_dim, train.text_dim, cfg.seed).to(device)
    ema = EMA(model, cfg.train.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    step = cfg.train.lr_drop if cfg.train.lr_drop else 10**9
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step, gamma=0.1)
    start, best = 0, {"score": -1.0, "epoch": -1, "metrics": {}}
    meta = {"config": to_dict(cfg), "video_dim": train.video_dim, "text_dim": train.text_dim}
    if cfg.train.resume and (out / "last.ckpt").is_file():
        ck = load_checkpoint(out / "last.ckpt")
        model.load_state_dict(ck["model"])
        ema.module.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, best = ck["epoch"] + 1, ck["best"]
        log(f"resumed from {out / 'last.ckpt'} at epoch {start}")
    epoch = start - 1  # the last epoch run
    while epoch + 1 < cfg.train.epochs and not _plateaued(best, epoch, cfg.train.patience):
        epoch += 1
        t0 = time.time()
        losses = _train_epoch(model, ema, opt, train, cfg, device, epoch)
        sched.step()
        rec: dict[str, Any] = {"epoch": epoch, "seconds": round(time.time() - t0, 2), **losses}
        last = epoch == cfg.train.epochs - 1
        if val is not None and (last or (cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0)):
            rec["val"] = evaluate(ema.module, val, device)
            if update_best(best, epoch, rec["val"], cfg.train.min_delta):
                save_checkpoint(out / "best.ckpt", model=ema.module.state_dict(), epoch=epoch, **meta)
        elif val is None and last:
            best = {"score": 0.0, "epoch": epoch, "metrics": {}}
            save_checkpoint(out / "best.ckpt", model=ema.module.state_dict(), epoch=epoch, **meta)
        save_checkpoint(out / "last.ckpt", model=model.state_dict(), ema=ema.module.state_dict(),
                        optimizer=opt.state_dict(), scheduler=sched.state_dict(), epoch=epoch, best=best, **meta)
        append_jsonl(out / "log.jsonl", rec)
        log(json.dumps(rec))
    stop = "plateau" if _plateaued(best, epoch, cfg.train.patience) else "budget"
    if stop == "plateau":
        log(f"val mIoU has not risen by more than {cfg.train.min_delta:g} since epoch {best['epoch']}: "
            f"stopped after epoch {epoch} (patience {cfg.train.patience})")
    return _finish(out, best, epoch + 1, stop, val is not None)
