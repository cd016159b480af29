"""RL set against its control: from the same supervised checkpoint, the GIRL RL stage and the continued-supervised
control (``rl.objective: supervised``: the set losses on the same heads, for the same epochs, over the same
batches), scored on the same held-out queries, with the paired difference and its standard error.

Paired difference over queries (``IoU`` = the top-1 window's IoU with the query's ground truth)::

    mIoU:   d_i = 100 * (IoU_rl(i) - IoU_ctl(i))
    R1@0.7: d_i = 100 * (1[IoU_rl(i) >= 0.7] - 1[IoU_ctl(i) >= 0.7])
    mean(d) and its standard error sd(d, ddof=1) / sqrt(n)

Over seeds (each seed its own synthetic data, initialisation, batch order and RL sampling, see
:mod:`timegrpo.detr.demo`) the differences are **averaged over seeds**: the mean of the per-seed means, with
standard error ``sqrt(sum_s se_s^2) / S`` (the seeds as strata of one pooled sample of test queries). That
standard error measures the noise of the test queries given the trained models, not how much the difference
moves from seed to seed, which is reported beside it as ``between_seed_sd`` with the per-seed values.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from timegrpo.detr.config import DetrConfig
from timegrpo.detr.features import FeatureDataset, load_split
from timegrpo.detr.rl import run_rl
from timegrpo.detr.train import (
    Log,
    load_checkpoint,
    model_from_checkpoint,
    predict_dataset,
    setup_torch,
    top1_ious,
)
from timegrpo.metrics import grounding_metrics

#: The differences reported, each with ``{key}_se``.
DIFF_KEYS = ("mIoU", "R1@0.7")
SEED_METHOD = ("mean over seeds of the per-seed paired differences over test queries; se = sqrt(sum of per-seed "
               "se^2) / seeds (test-query noise given the models); between_seed_sd = sd of the per-seed means")


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """``mean(a - b)`` and its standard error ``sd(a - b, ddof=1) / sqrt(n)`` (0 for a single pair).

    >>> m, se = paired_difference([0.5, 0.75, 1.0], [0.5, 0.5, 0.5])  # d = 0, .25, .5: sd .25, se .25 / sqrt 3
    >>> m, round(se, 6)
    (0.25, 0.144338)
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        raise ValueError("paired_difference: no pairs")
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0
    return float(d.mean()), se


def rl_minus_control(ious_rl: Sequence[float], ious_ctl: Sequence[float], threshold: float = 0.7,
                     ) -> dict[str, float]:
    """Paired RL - control differences over the same queries, in points: ``mIoU``, ``mIoU_se``, ``R1@0.7``,
    ``R1@0.7_se`` and ``queries``.

    >>> d = rl_minus_control([0.8, 0.6, 0.2], [0.6, 0.7, 0.2])
    >>> round(d["mIoU"], 4), round(d["mIoU_se"], 4), round(d["R1@0.7"], 4), round(d["R1@0.7_se"], 4)
    (3.3333, 8.8192, 0.0, 57.735)
    """
    if len(ious_rl) != len(ious_ctl):
        raise ValueError(f"rl_minus_control: {len(ious_rl)} RL IoUs but {len(ious_ctl)} control IoUs")
    rl, ctl = np.asarray(ious_rl, dtype=float), np.asarray(ious_ctl, dtype=float)
    m, m_se = paired_difference(100 * rl, 100 * ctl)
    r, r_se = paired_difference(100.0 * (rl >= threshold), 100.0 * (ctl >= threshold))
    return {"mIoU": m, "mIoU_se": m_se, f"R1@{threshold:g}": r, f"R1@{threshold:g}_se": r_se, "queries": len(rl)}


def combine_seeds(per_seed: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Average per-seed :func:`rl_minus_control` results (see the module docstring for the standard error).

    >>> c = combine_seeds([{"mIoU": 1.0, "mIoU_se": 0.3, "R1@0.7": 2.0, "R1@0.7_se": 1.2, "queries": 10},
    ...                    {"mIoU": 0.0, "mIoU_se": 0.4, "R1@0.7": 0.0, "R1@0.7_se": 1.6, "queries": 12}])
    >>> c["mIoU"], round(c["mIoU_se"], 4), c["R1@0.7"], c["R1@0.7_se"], c["queries"], round(c["between_seed_sd"]["mIoU"], 4)
    (0.5, 0.25, 1.0, 1.0, 22, 0.7071)
    """
    if not per_seed:
        raise ValueError("combine_seeds: no seeds")
    out: dict[str, Any] = {}
    spread = {}
    for key in DIFF_KEYS:
        vals = np.array([s[key] for s in per_seed], dtype=float)
        out[key] = float(vals.mean())
        out[f"{key}_se"] = float(math.sqrt(sum(s[f"{key}_se"] ** 2 for s in per_seed)) / len(per_seed))
        spread[key] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    out["queries"] = int(sum(s["queries"] for s in per_seed))
    out["between_seed_sd"] = spread
    out["per_seed"] = {key: [s[key] for s in per_seed] for key in DIFF_KEYS}
    out["method"] = SEED_METHOD
    return out


def scoring_split(cfg: DetrConfig) -> tuple[str, FeatureDataset]:
    """The held-out split the comparison is scored on: ``data.test`` when every query there has ground truth
    (QVHighlights' test release has none), else ``data.val``."""
    for split in ("test", "val"):
        if getattr(cfg.data, split) is None:
            continue
        ds = load_split(cfg.data, cfg.resolve, split, require_windows=False)
        if all(s.windows for s in ds.samples):
            return split, ds
    raise ValueError("no held-out split with ground truth to score RL against its control: set data.test or data.val")


def checkpoint_ious(path: str, dataset: FeatureDataset, device: torch.device) -> list[float]:
    """Top-1 IoU of each query of ``dataset`` under the checkpoint at ``path``."""
    model = model_from_checkpoint(load_checkpoint(path)).to(device)
    return top1_ious(predict_dataset(model, dataset, device, max_windows=1), dataset)


def compare_rl_control(cfg: DetrConfig, log: Log = print, *, control: bool = True) -> dict[str, Any]:
    """Run the RL stage (and, with ``control``, the control from the same checkpoint into ``rl_control/``) and
    score the supervised start, RL and control on :func:`scoring_split`. Returns ``split``, ``queries``,
    ``supervised``/``rl``/``control`` metrics, ``rl_minus_control`` (:func:`rl_minus_control`), the RL
    checkpoint, ``changed_parameters``, ``trainable_parameters`` and the supervised run's ``train_summary``."""
    rl = run_rl(cfg, log)
    split, ds = scoring_split(cfg)
    device = setup_torch(cfg)
    ious = {"supervised": checkpoint_ious(rl.init, ds, device), "rl": checkpoint_ious(rl.checkpoint, ds, device)}
    report: dict[str, Any] = {"split": split, "queries": len(ds), "rl_checkpoint": rl.checkpoint,
                              "changed_parameters": rl.changed_parameters,
                              "trainable_parameters": rl.trainable_parameters, "train_summary": rl.supervised}
    if control:
        ctl_cfg = copy.deepcopy(cfg)
        ctl_cfg.rl.objective = "supervised"
        ctl_cfg.rl.on_unconverged = "ignore"  # checked (and reported) once, above
        ctl = run_rl(ctl_cfg, log, out_name="rl_control")
        ious["control"] = checkpoint_ious(ctl.checkpoint, ds, device)
        report["rl_minus_control"] = rl_minus_control(ious["rl"], ious["control"])
    report.update({name: grounding_metrics(v) for name, v in ious.items()})
    return report
