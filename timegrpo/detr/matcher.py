"""Span geometry on tensors and the Hungarian matcher (DETR set prediction, 1-d).

Spans are normalised to [0, 1] of the feature length; ``cxw`` is ``(center, width)``, ``xx`` is ``(start, end)``.
The IoU here is the same formula as :func:`timegrpo.spans.span_iou` (a test checks they agree), vectorised.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def cxw_to_xx(spans: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` (center, width) -> (start, end).

    >>> cxw_to_xx(torch.tensor([[0.5, 0.5]])).tolist()
    [[0.25, 0.75]]
    """
    c, w = spans.unbind(-1)
    return torch.stack([c - 0.5 * w, c + 0.5 * w], dim=-1)


def xx_to_cxw(spans: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` (start, end) -> (center, width).

    >>> xx_to_cxw(torch.tensor([[0.25, 0.75]])).tolist()
    [[0.5, 0.5]]
    """
    s, e = spans.unbind(-1)
    return torch.stack([(s + e) / 2, e - s], dim=-1)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union of every pair: ``a (..., N, 2)`` and ``b (..., M, 2)`` in xx -> ``(..., N, M)`` each; IoU 0 where
    the union is 0. Equals :func:`timegrpo.spans.span_iou` (whose denominator, the hull, is the union whenever
    the spans overlap).

    >>> iou, union = pairwise_iou(torch.tensor([[0.0, 0.4]]), torch.tensor([[0.2, 0.6], [0.5, 0.7]]))
    >>> [round(v, 4) for v in iou[0].tolist()], [round(v, 4) for v in union[0].tolist()]
    ([0.3333, 0.0], [0.6, 0.6])
    """
    a, b = a.unsqueeze(-2), b.unsqueeze(-3)
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))
    return iou, union


def pairwise_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of every pair (xx): ``IoU - (hull - union) / hull`` -> ``(..., N, M)`` in [-1, 1].

    >>> round(pairwise_giou(torch.tensor([[0.0, 0.2]]), torch.tensor([[0.6, 0.8]])).item(), 4)
    -0.5
    """
    iou, union = pairwise_iou(a, b)
    a, b = a.unsqueeze(-2), b.unsqueeze(-3)
    hull = (torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])).clamp(min=1e-12)
    return iou - (hull - union) / hull


def paired_giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of matched pairs ``a (N, 2)``, ``b (N, 2)`` (xx) -> ``(N,)``."""
    if a.shape[0] == 0:
        return a.new_zeros(0)
    return pairwise_giou(a.unsqueeze(-2), b.unsqueeze(-2))[..., 0, 0]


def best_gt_iou(spans: torch.Tensor, gts: torch.Tensor, gt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each predicted span, the IoU with its best ground-truth window and that window's index.

    ``spans (B, Q, 2)`` cxw, ``gts (B, G, 2)`` cxw padded, ``gt_mask (B, G)`` True on real windows ->
    ``(iou (B, Q), index (B, Q))``; IoU 0 (index 0) for a query with no ground truth.

    >>> iou, idx = best_gt_iou(torch.tensor([[[0.5, 0.2], [0.1, 0.2]]]), torch.tensor([[[0.1, 0.2], [0.5, 0.4]]]),
    ...                        torch.tensor([[True, True]]))
    >>> [round(v, 3) for v in iou[0].tolist()], idx[0].tolist()
    ([0.5, 1.0], [1, 0])
    """
    iou, _ = pairwise_iou(cxw_to_xx(spans), cxw_to_xx(gts))
    iou = iou.masked_fill(~gt_mask.unsqueeze(1), -1.0)
    best, idx = iou.max(dim=-1)
    return best.clamp(min=0.0), idx


@torch.no_grad()
def hungarian_match(logits: torch.Tensor, spans: torch.Tensor, gts: torch.Tensor, gt_mask: torch.Tensor, *,
                    cost_span: float = 10.0, cost_giou: float = 1.0, cost_class: float = 4.0,
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Optimal one-to-one assignment of queries to ground-truth windows, per sample.

    Cost of query i for window j: ``cost_span * |span_i - gt_j|_1 (cxw) - cost_giou * GIoU(span_i, gt_j)
    - cost_class * p_i(foreground)``; solved with scipy's ``linear_sum_assignment``.
    ``logits (B, Q, 2)`` (class 0 = foreground, 1 = no object), ``spans (B, Q, 2)`` cxw, ``gts (B, G, 2)``,
    ``gt_mask (B, G)``. Returns per sample ``(query_idx, gt_idx)`` long tensors of length ``#windows``.

    >>> logits = torch.zeros(1, 3, 2)
    >>> spans = torch.tensor([[[0.2, 0.1], [0.5, 0.2], [0.8, 0.1]]])
    >>> q, g = hungarian_match(logits, spans, torch.tensor([[[0.8, 0.1], [0.45, 0.2]]]), torch.tensor([[True, True]]))[0]
    >>> q.tolist(), g.tolist()
    ([1, 2], [1, 0])
    """
    prob_fg = logits.softmax(-1)[..., 0]
    l1 = torch.cdist(spans, gts, p=1)
    giou = pairwise_giou(cxw_to_xx(spans), cxw_to_xx(gts))
    cost = cost_span * l1 - cost_giou * giou - cost_class * prob_fg.unsqueeze(-1)
    out = []
    for b in range(cost.shape[0]):
        c = cost[b][:, gt_mask[b]].cpu().numpy()
        if c.shape[1] == 0:
            out.append((torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
            continue
        rows, cols = linear_sum_assignment(np.nan_to_num(c, nan=1e6))
        keep = np.argsort(rows)
        out.append((torch.as_tensor(rows[keep], dtype=torch.long), torch.as_tensor(cols[keep], dtype=torch.long)))
    return out
