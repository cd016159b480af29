"""Span geometry, Hungarian matching and the supervised losses, against hand-computed numbers."""

from __future__ import annotations

import itertools

import pytest
import torch

from timegrpo.detr.config import DetrLossConfig
from timegrpo.detr.losses import label_loss, saliency_ranking_loss, set_criterion
from timegrpo.detr.matcher import cxw_to_xx, hungarian_match, pairwise_giou, pairwise_iou, xx_to_cxw
from timegrpo.detr.model import DetrOutput
from timegrpo.spans import span_iou


def test_pairwise_iou_equals_the_shared_span_iou() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(20, 2, generator=g).sort(-1).values
    b = torch.rand(15, 2, generator=g).sort(-1).values
    b[0] = a[0]  # identical
    b[1] = torch.tensor([a[1, 1], a[1, 1] + 0.1])  # touching
    iou, _ = pairwise_iou(a, b)
    expect = torch.tensor([[span_iou(x.tolist(), y.tolist()) for y in b] for x in a])
    torch.testing.assert_close(iou, expect, atol=1e-6, rtol=1e-5)
    assert iou[0, 0] == pytest.approx(1.0) and iou[1, 1] == 0.0


def test_giou_by_hand() -> None:
    # [0, 0.4] vs [0.2, 0.6]: IoU 0.2/0.6, hull 0.6 = union -> GIoU = IoU
    assert pairwise_giou(torch.tensor([[0.0, 0.4]]), torch.tensor([[0.2, 0.6]])).item() == pytest.approx(1 / 3)
    # [0, 0.1] vs [0.5, 0.7]: IoU 0, union 0.3, hull 0.7 -> -0.4/0.7
    assert pairwise_giou(torch.tensor([[0.0, 0.1]]), torch.tensor([[0.5, 0.7]])).item() == pytest.approx(-0.4 / 0.7)
    x = torch.tensor([[0.3, 0.2], [0.9, 0.05]])
    torch.testing.assert_close(xx_to_cxw(cxw_to_xx(x)), x)


def _brute_force(cost: torch.Tensor) -> float:
    q, g = cost.shape
    return min(sum(cost[p[j], j].item() for j in range(g)) for p in itertools.permutations(range(q), g))


def test_hungarian_match_is_optimal_against_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        logits = torch.randn(1, 5, 2, generator=g)
        spans = torch.rand(1, 5, 2, generator=g) * 0.5 + 0.1
        gts = torch.rand(1, 3, 2, generator=g) * 0.5 + 0.1
        mask = torch.tensor([[True, True, True]])
        (qi, gi), = hungarian_match(logits, spans, gts, mask)
        l1 = torch.cdist(spans[0], gts[0], p=1)
        cost = 10 * l1 - pairwise_giou(cxw_to_xx(spans[0]), cxw_to_xx(gts[0])) - 4 * logits[0].softmax(-1)[:, :1]
        assert sum(cost[q, j].item() for q, j in zip(qi, gi)) == pytest.approx(_brute_force(cost), abs=1e-5)
        assert sorted(gi.tolist()) == [0, 1, 2]


def test_hungarian_ignores_padded_windows() -> None:
    spans = torch.tensor([[[0.2, 0.1], [0.7, 0.1]], [[0.2, 0.1], [0.7, 0.1]]])
    gts = torch.tensor([[[0.7, 0.1], [0.0, 0.0]], [[0.2, 0.1], [0.7, 0.1]]])
    mask = torch.tensor([[True, False], [True, True]])
    m = hungarian_match(torch.zeros(2, 2, 2), spans, gts, mask)
    assert m[0][0].tolist() == [1] and m[0][1].tolist() == [0]
    assert m[1][0].tolist() == [0, 1] and m[1][1].tolist() == [0, 1]


def test_label_loss_weights_no_object_by_eos_coef_and_both_reductions() -> None:
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    matched = torch.tensor([[True, False, False]])
    # nll: ln(1 + e^-2) = 0.126928 (fg), ln(1 + e^-1) = 0.313262 (no object), ln 2 = 0.693147 (no object)
    weighted = 0.126928 + 0.1 * 0.313262 + 0.1 * 0.693147  # 0.227569
    # Moment-DETR: reduction="none" then the mean over the 3 queries
    assert label_loss(logits, matched, 0.1).item() == pytest.approx(weighted / 3, rel=1e-5)
    assert label_loss(logits, matched, 0.1, "mean").item() == pytest.approx(0.0758564, rel=1e-5)
    # PyTorch's weighted mean divides by the sum of the weights, 1.2
    assert label_loss(logits, matched, 0.1, "weighted_mean").item() == pytest.approx(weighted / 1.2, rel=1e-5)
    with pytest.raises(KeyError, match="known: mean, weighted_mean"):
        label_loss(logits, matched, 0.1, "sum")


def test_saliency_ranking_loss_by_hand_and_masked() -> None:
    scores = torch.tensor([[0.5, 0.0, 0.1, 9.0]])
    targets = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    # pairs with t_i > t_j among real clips: (0,1): 0.45 - 0.5 -> 0; (0,2): 0.45 - 0.4 = 0.05; mean 0.025
    assert saliency_ranking_loss(scores, targets, mask, 0.45).item() == pytest.approx(0.025)
    assert saliency_ranking_loss(scores, torch.zeros(1, 4), mask, 0.45).item() == 0.0


def test_set_criterion_sums_weighted_layers_and_backpropagates() -> None:
    spans = [torch.tensor([[[0.3, 0.2], [0.7, 0.2]]], requires_grad=True) for _ in range(2)]
    logits = [torch.zeros(1, 2, 2, requires_grad=True) for _ in range(2)]
    ious = [torch.full((1, 2), 0.5, requires_grad=True) for _ in range(2)]
    out = DetrOutput(spans, logits, ious, None)
    gts, mask = torch.tensor([[[0.3, 0.4]]]), torch.tensor([[True]])
    cfg = DetrLossConfig(label_reduction="weighted_mean")
    total, logs = set_criterion(out, gts, mask, torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool), cfg)
    # matched query 0: L1 = mean(0, 0.2) = 0.1; GIoU([0.2,0.4],[0.1,0.5]) = 0.5 -> 0.5; CE = ln 2 (weighted mean:
    # (ln 2 + 0.1 ln 2) / 1.1; Moment-DETR's mean: (ln 2 + 0.1 ln 2) / 2 = 0.381231);
    # IoU head: |0.5 - 0.5| and |0.5 - 0| -> 0.25
    assert logs["span"] == pytest.approx(0.1) and logs["giou"] == pytest.approx(0.5)
    assert logs["label"] == pytest.approx(0.693147, rel=1e-5) and logs["iou"] == pytest.approx(0.25)
    per_layer = 10 * 0.1 + 0.5 + 4 * 0.693147 + 0.25
    assert total.item() == pytest.approx(2 * per_layer, rel=1e-5)
    total.backward()
    assert spans[0].grad is not None and spans[0].grad[0, 0].abs().sum() > 0 and spans[0].grad[0, 1].abs().sum() == 0
    no_aux, _ = set_criterion(out, gts, mask, torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool),
                              DetrLossConfig(aux_loss=False, label_reduction="weighted_mean"))
    assert no_aux.item() == pytest.approx(per_layer, rel=1e-5)
    moment_detr, logs = set_criterion(out, gts, mask, torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool),
                                      DetrLossConfig(aux_loss=False))
    assert logs["label"] == pytest.approx(0.381231, rel=1e-5)
    assert moment_detr.item() == pytest.approx(10 * 0.1 + 0.5 + 4 * 0.381231 + 0.25, rel=1e-5)
