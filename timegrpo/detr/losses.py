"""Supervised GIRL-DETR losses: set losses after Hungarian matching, IoU-head and saliency ranking losses.

Each term is a small pure function over tensors; :func:`set_criterion` sums them with the recipe's weights
(``L1 x10 + GIoU x1 + CE x4`` with no-object weight 0.1, SPEC section 4) over every decoder layer
(auxiliary losses) and adds the saliency ranking loss once. The class cross-entropy is averaged as Moment-DETR
does (``loss.label_reduction: mean``); PyTorch's weighted mean is the other registered reading.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from timegrpo.detr.config import DetrLossConfig
from timegrpo.detr.matcher import best_gt_iou, cxw_to_xx, hungarian_match, paired_giou
from timegrpo.detr.model import DetrOutput
from timegrpo.registry import Registry


def span_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over matched ``(N, 2)`` cxw spans (0 when N = 0).

    >>> span_l1_loss(torch.tensor([[0.5, 0.2]]), torch.tensor([[0.4, 0.4]])).item()
    0.15000000596046448
    """
    return F.l1_loss(pred, target) if pred.numel() else pred.sum() * 0.0


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - GIoU`` over matched ``(N, 2)`` cxw spans (0 when N = 0).

    >>> round(giou_loss(torch.tensor([[0.1, 0.2]]), torch.tensor([[0.7, 0.2]])).item(), 4)
    1.5
    """
    if not pred.numel():
        return pred.sum() * 0.0
    return (1 - paired_giou(cxw_to_xx(pred), cxw_to_xx(target))).mean()


#: How the per-query weighted class cross-entropy ``(B, Q)`` and its weights ``(B, Q)`` become one number.
LABEL_REDUCTIONS: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("class-loss reduction")


@LABEL_REDUCTIONS.register("mean")
def mean_reduction(weighted_nll: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Moment-DETR's ``F.cross_entropy(..., weight, reduction="none").mean()``: the plain mean over all queries.

    >>> mean_reduction(torch.tensor([[1.0, 0.1]]), torch.tensor([[1.0, 0.1]])).item()
    0.550000011920929
    """
    return weighted_nll.mean()


@LABEL_REDUCTIONS.register("weighted_mean")
def weighted_mean_reduction(weighted_nll: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """PyTorch's default with class weights: ``sum(w * nll) / sum(w)``.

    >>> weighted_mean_reduction(torch.tensor([[1.0, 0.1]]), torch.tensor([[1.0, 0.1]])).item()
    1.0
    """
    return weighted_nll.sum() / weights.sum()


def label_loss(logits: torch.Tensor, matched: torch.Tensor, eos_coef: float, reduction: str = "mean",
               ) -> torch.Tensor:
    """Weighted cross-entropy of ``logits (B, Q, 2)``: class 0 for matched queries (``matched (B, Q)`` bool),
    class 1 (no object, weight ``eos_coef``) for the rest, reduced by ``LABEL_REDUCTIONS[reduction]``:
    ``mean`` (Moment-DETR, the default) divides ``sum w * nll`` by ``B * Q``, ``weighted_mean`` (PyTorch's rule)
    by ``sum w`` (with 1 of 10 queries matched and eos_coef 0.1: 1.9 / 10 vs 1.9 / 1, i.e. 5.3x stronger).

    >>> round(label_loss(torch.zeros(1, 2, 2), torch.tensor([[True, False]]), 0.1).item(), 4)
    0.3812
    >>> round(label_loss(torch.zeros(1, 2, 2), torch.tensor([[True, False]]), 0.1, "weighted_mean").item(), 4)
    0.6931
    """
    target = (~matched).long()
    class_weight = torch.tensor([1.0, eos_coef], device=logits.device, dtype=logits.dtype)
    nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")  # (B, Q)
    weights = class_weight[target]
    return LABEL_REDUCTIONS.get(reduction)(weights * nll, weights)


def iou_head_loss(pred_iou: torch.Tensor, spans: torch.Tensor, gts: torch.Tensor, gt_mask: torch.Tensor,
                  ) -> torch.Tensor:
    """Mean ``|pred_iou - IoU(span, best GT)|`` over all ``(B, Q)`` queries; the target IoU is detached.

    >>> spans = torch.tensor([[[0.5, 0.2]]]); gts = torch.tensor([[[0.5, 0.4]]])
    >>> round(iou_head_loss(torch.tensor([[0.3]]), spans, gts, torch.tensor([[True]])).item(), 4)
    0.2
    """
    target, _ = best_gt_iou(spans.detach(), gts, gt_mask)
    return (pred_iou - target).abs().mean()


def saliency_ranking_loss(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                          margin: float = 0.2) -> torch.Tensor:
    """Pairwise hinge: for every pair of real clips (i, j) of a video with ``targets[i] > targets[j]``,
    ``max(0, margin - (scores[i] - scores[j]))``, averaged over all such pairs in the batch.

    Departure (ours): all pairs, not Moment-DETR's two sampled positive/negative clips per query.
    ``scores, targets (B, L)``, ``mask (B, L)`` True on real clips. 0 when no pair exists.

    >>> s = torch.tensor([[0.0, 1.0, 0.5]]); t = torch.tensor([[0.0, 2.0, 1.0]])
    >>> round(saliency_ranking_loss(s, t, torch.ones(1, 3, dtype=torch.bool), margin=0.6).item(), 4)
    0.0667
    """
    diff_t = targets.unsqueeze(2) - targets.unsqueeze(1)  # (B, L, L): t_i - t_j
    valid = (diff_t > 0) & mask.unsqueeze(2) & mask.unsqueeze(1)
    if not valid.any():
        return scores.sum() * 0.0
    hinge = (margin - (scores.unsqueeze(2) - scores.unsqueeze(1))).clamp(min=0)
    return hinge[valid].mean()


def layer_losses(spans: torch.Tensor, logits: torch.Tensor, pred_iou: torch.Tensor, gts: torch.Tensor,
                 gt_mask: torch.Tensor, cfg: DetrLossConfig) -> dict[str, torch.Tensor]:
    """Matching + set losses of one decoder layer: ``{"span", "giou", "label", "iou"}`` (unweighted)."""
    matches = hungarian_match(logits.detach(), spans.detach(), gts, gt_mask, cost_span=cfg.cost_span,
                              cost_giou=cfg.cost_giou, cost_class=cfg.cost_class)
    b_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(matches)]).to(spans.device)
    q_idx = torch.cat([q for q, _ in matches]).to(spans.device)
    g_idx = torch.cat([g for _, g in matches]).to(spans.device)
    pred, target = spans[b_idx, q_idx], gts[b_idx, g_idx]
    matched = torch.zeros(logits.shape[:2], dtype=torch.bool, device=logits.device)
    matched[b_idx, q_idx] = True
    return {
        "span": span_l1_loss(pred, target),
        "giou": giou_loss(pred, target),
        "label": label_loss(logits, matched, cfg.eos_coef, cfg.label_reduction),
        "iou": iou_head_loss(pred_iou, spans, gts, gt_mask),
    }


def set_criterion(out: DetrOutput, gts: torch.Tensor, gt_mask: torch.Tensor, saliency: torch.Tensor,
                  video_mask: torch.Tensor, cfg: DetrLossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Total supervised loss and its logged parts.

    ``sum over layers (final, plus aux when cfg.aux_loss) of span_coef*L1 + giou_coef*(1-GIoU) +
    label_coef*CE + iou_coef*|IoU head|``, plus ``saliency_coef * ranking loss``.
    """
    layers = range(len(out.spans)) if cfg.aux_loss else [len(out.spans) - 1]
    weights = {"span": cfg.span_coef, "giou": cfg.giou_coef, "label": cfg.label_coef, "iou": cfg.iou_coef}
    total = out.spans[-1].sum() * 0.0
    logs: dict[str, float] = {}
    for i in layers:
        parts = layer_losses(out.spans[i], out.logits[i], out.iou[i], gts, gt_mask, cfg)
        for k, v in parts.items():
            total = total + weights[k] * v
            if i == len(out.spans) - 1:
                logs[k] = float(v.detach())
    if cfg.saliency_coef > 0 and out.saliency is not None:
        sal = saliency_ranking_loss(out.saliency, saliency, video_mask, cfg.saliency_margin)
        total = total + cfg.saliency_coef * sal
        logs["saliency"] = float(sal.detach())
    logs["total"] = float(total.detach())
    return total, logs
