"""Gradient-isolated RL on the GIRL-DETR detection heads (SPEC section 4).

Starting from the supervised checkpoint (its EMA weights), every parameter except the span / class / IoU heads
is frozen, and after the stage :func:`assert_isolated` compares every parameter tensor with its value before
the stage and raises if anything outside the heads changed. The loss of epoch ``e`` is::

    L = top1_coef * L_top1 + c_S(e) * L_span + c_R(e) * L_reinforce (+ iou_coef * L_iou_head)

* ``L_top1``: L1 + (1 - GIoU) between the top-scoring query's span and its best ground truth (all epochs).
* ``L_span`` (from ``p1``): the top-``k`` queries by score, weights ``(1 - IoU_j) / sum (1 - IoU)``, weighted L1.
* ``L_reinforce`` (from ``p2``): the policy ``softmax(score / temperature)`` over the queries (score = p_fg as
  the spec writes it, or the fg logit: ``policy_score``), ``n_samples`` draws,
  reward = IoU of the drawn query's span with its best ground truth (``reward: hit``: ``1[IoU >= reward_threshold]``,
  ours), advantage = reward - reward of the argmax
  query (``greedy``) or the z-score of the reward among all queries (``group``, GRPO-style).
* ``c_S`` ramps linearly from ``p1`` to ``rho`` at ``p2`` (``span_ramp``); ``c_R`` ramps from ``p2`` to ``rho`` over
  ``reinforce_ramp`` epochs; optional cosine decay of both to ``rho * decay_floor`` afterwards.

Departures (ours): the frozen network runs in eval mode (no dropout) since its weights cannot change; the IoU
head keeps its supervised L1 loss on the moving spans (``iou_coef``, 0 to leave it alone); objective
``supervised`` (the set losses on the heads alone, same schedule of epochs) is the continued-supervised control.
Note: only ``L_reinforce`` reaches the class head, and AdamW normalises each parameter's step, so ``c_R``
switches the class head's learning on rather than scaling it (``rho`` weighs the span losses against ``L_top1``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from timegrpo.config.core import ConfigError, to_dict
from timegrpo.detr.config import DetrConfig, DetrRLConfig
from timegrpo.detr.features import Batch
from timegrpo.detr.losses import iou_head_loss, set_criterion
from timegrpo.detr.matcher import best_gt_iou, cxw_to_xx, paired_giou, pairwise_iou
from timegrpo.detr.model import DetrOutput, GirlDetr
from timegrpo.detr.train import (
    Log,
    append_jsonl,
    batches,
    evaluate,
    load_checkpoint,
    load_data,
    model_from_checkpoint,
    save_checkpoint,
    setup_torch,
    still_improving,
)
from timegrpo.registry import Registry

BASELINES: Registry[Callable[..., torch.Tensor]] = Registry("REINFORCE baseline")
DETR_RL_OBJECTIVES: Registry[Callable[..., tuple[torch.Tensor, dict[str, float]]]] = Registry("GIRL-DETR RL objective")


def rl_coefficients(epoch: int, cfg: DetrRLConfig, total_epochs: int | None = None) -> tuple[float, float]:
    """``(c_S, c_R)`` for 0-based ``epoch``.

    ``c_S = rho * min(1, (e - p1 + 1) / (p2 - p1 + 1))`` from ``p1``, so it reaches ``rho`` at epoch ``p2``
    (``span_ramp: before_p2``, the earlier reading: ``/ (p2 - p1)``, ``rho`` at ``p2 - 1``; both give ``rho``
    at once when ``p1 == p2``); ``c_R = rho * min(1, (e - p2 + 1) / reinforce_ramp)`` from ``p2``; with
    ``cosine_decay``, after the ``c_R`` ramp ends both follow ``floor + (rho - floor) * (1 + cos(pi * t)) / 2``
    with ``t`` going 0 -> 1 over the remaining epochs up to ``total_epochs`` (default ``cfg.epochs``) and
    ``floor = rho * decay_floor``.

    >>> cfg = DetrRLConfig(p1=8, p2=12, rho=0.03, reinforce_ramp=10)
    >>> [tuple(round(c, 4) for c in rl_coefficients(e, cfg)) for e in (0, 7, 8, 11, 12, 16, 21, 30)]
    [(0.0, 0.0), (0.0, 0.0), (0.006, 0.0), (0.024, 0.0), (0.03, 0.003), (0.03, 0.015), (0.03, 0.03), (0.03, 0.03)]
    >>> cfg = DetrRLConfig(p1=8, p2=12, rho=0.03, reinforce_ramp=10, span_ramp="before_p2")
    >>> [round(rl_coefficients(e, cfg)[0], 4) for e in (8, 11, 12)]
    [0.0075, 0.03, 0.03]
    >>> cfg = DetrRLConfig(p1=2, p2=2, rho=0.05, reinforce_ramp=2, cosine_decay=True, decay_floor=0.2)
    >>> [tuple(round(c, 4) for c in rl_coefficients(e, cfg, total_epochs=7)) for e in (2, 3, 4, 6)]
    [(0.05, 0.025), (0.05, 0.05), (0.04, 0.04), (0.01, 0.01)]
    """
    rho = cfg.rho
    span_len = cfg.p2 - cfg.p1 + (1 if cfg.span_ramp == "to_p2" else 0)
    c_s = 0.0 if epoch < cfg.p1 else rho * min(1.0, (epoch - cfg.p1 + 1) / max(1, span_len))
    c_r = 0.0 if epoch < cfg.p2 else rho * min(1.0, (epoch - cfg.p2 + 1) / max(1, cfg.reinforce_ramp))
    ramp_end = cfg.p2 + max(1, cfg.reinforce_ramp) - 1  # first epoch at full rho
    total = cfg.epochs if total_epochs is None else total_epochs
    if cfg.cosine_decay and epoch > ramp_end and total - 1 > ramp_end:
        t = (epoch - ramp_end) / (total - 1 - ramp_end)
        floor = rho * cfg.decay_floor
        c = floor + (rho - floor) * (1 + math.cos(math.pi * min(t, 1.0))) / 2
        c_s, c_r = c, c
    return c_s, c_r


def assign_gt(spans: torch.Tensor, gts: torch.Tensor, gt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's best ground truth: max IoU, ties (e.g. no overlap with any) broken by the smallest L1.

    ``spans (B, Q, 2)``, ``gts (B, G, 2)`` cxw, ``gt_mask (B, G)`` -> ``(iou (B, Q), gt (B, Q, 2))``; both detached.

    >>> iou, gt = assign_gt(torch.tensor([[[0.1, 0.1]]]), torch.tensor([[[0.9, 0.1], [0.4, 0.1]]]),
    ...                     torch.tensor([[True, True]]))
    >>> iou.tolist(), gt.tolist()
    ([[0.0]], [[[0.4000000059604645, 0.10000000149011612]]])
    """
    spans = spans.detach()
    iou, _ = pairwise_iou(cxw_to_xx(spans), cxw_to_xx(gts))  # (B, Q, G)
    l1 = torch.cdist(spans, gts, p=1)
    key = (iou - 1e-3 * l1).masked_fill(~gt_mask.unsqueeze(1), float("-inf"))
    idx = key.argmax(-1)
    gt = torch.gather(gts, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    return torch.gather(iou, 2, idx.unsqueeze(-1)).squeeze(-1), gt


def top1_loss(spans: torch.Tensor, scores: torch.Tensor, gts: torch.Tensor, gt_mask: torch.Tensor) -> torch.Tensor:
    """Phase-1 loss: for the argmax-score query of each sample, ``mean|span - gt|_1 + (1 - GIoU(span, gt))``
    with its best ground truth; averaged over the batch. ``spans (B, Q, 2)`` cxw, ``scores (B, Q)``.

    >>> spans = torch.tensor([[[0.5, 0.2], [0.3, 0.2]]]); scores = torch.tensor([[0.2, 0.9]])
    >>> round(top1_loss(spans, scores, torch.tensor([[[0.3, 0.4]]]), torch.tensor([[True]])).item(), 4)
    0.6
    """
    b = torch.arange(spans.shape[0], device=spans.device)
    top = spans[b, scores.argmax(-1)]  # (B, 2)
    _, gt = assign_gt(top.unsqueeze(1), gts, gt_mask)
    gt = gt[:, 0]
    l1 = (top - gt).abs().mean(-1)
    giou = paired_giou(cxw_to_xx(top), cxw_to_xx(gt))
    return (l1 + 1 - giou).mean()


def topk_weighted_span_loss(spans: torch.Tensor, scores: torch.Tensor, gts: torch.Tensor, gt_mask: torch.Tensor,
                            k: int = 3) -> torch.Tensor:
    """Phase-2 loss: the top-``k`` queries by score, each with weight ``(1 - IoU_j) / sum_j (1 - IoU_j)``
    (detached; IoU with its best ground truth), ``sum_j w_j * mean|span_j - gt_j|_1``, averaged over the batch.

    >>> spans = torch.tensor([[[0.3, 0.4], [0.5, 0.4], [0.9, 0.1]]]); scores = torch.tensor([[0.9, 0.8, 0.1]])
    >>> round(topk_weighted_span_loss(spans, scores, torch.tensor([[[0.3, 0.4]]]), torch.tensor([[True]]), k=2).item(), 4)
    0.1
    """
    k = min(k, spans.shape[1])
    idx = scores.topk(k, dim=-1).indices  # (B, k)
    top = torch.gather(spans, 1, idx.unsqueeze(-1).expand(-1, -1, 2))  # (B, k, 2)
    iou, gt = assign_gt(top, gts, gt_mask)
    w = 1 - iou
    w = w / w.sum(-1, keepdim=True).clamp(min=1e-6)
    return (w * (top - gt).abs().mean(-1)).sum(-1).mean()


def policy_scores(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The per-query score the policy and the top-1 choice use: ``prob`` = p(foreground) (what ``predict``
    ranks by), ``logit`` = fg logit - no-object logit (same order, no saturation). ``(B, Q, 2) -> (B, Q)``.

    >>> policy_scores(torch.tensor([[[2.0, 0.0]]]), "logit").item(), round(policy_scores(torch.tensor([[[2.0, 0.0]]]), "prob").item(), 4)
    (2.0, 0.8808)
    """
    if kind == "prob":
        return logits.softmax(-1)[..., 0]
    if kind == "logit":
        return logits[..., 0] - logits[..., 1]
    raise ValueError(f"unknown policy score {kind!r}; known: prob, logit")


def policy_log_probs(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax(scores / temperature)`` over the queries: ``(B, Q)``."""
    return torch.log_softmax(scores / temperature, dim=-1)


def sample_actions(scores: torch.Tensor, temperature: float, n: int, generator: torch.Generator | None = None,
                   ) -> torch.Tensor:
    """``n`` queries per sample drawn (with replacement) from the policy: ``(B, n)`` long."""
    probs = policy_log_probs(scores.detach(), temperature).exp()
    return torch.multinomial(probs.cpu(), n, replacement=True, generator=generator).to(scores.device)


#: The REINFORCE reward of a query from its IoU with its best ground truth: ``f(iou (B, Q), threshold) -> (B, Q)``.
DETR_REWARDS: Registry[Callable[[torch.Tensor, float], torch.Tensor]] = Registry("GIRL-DETR reward")


@DETR_REWARDS.register("iou")
def iou_reward(iou: torch.Tensor, threshold: float) -> torch.Tensor:
    """The spec's reward: the IoU itself (``threshold`` unused)."""
    return iou


@DETR_REWARDS.register("hit")
def hit_reward(iou: torch.Tensor, threshold: float) -> torch.Tensor:
    """``1[IoU >= threshold]``: R1@threshold of the drawn query (ours, a metric-shaped reward).

    >>> hit_reward(torch.tensor([[0.69, 0.7, 0.9]]), 0.7).tolist()
    [[0.0, 1.0, 1.0]]
    """
    return (iou >= threshold).to(iou.dtype)


@BASELINES.register("greedy")
def greedy_advantage(scores: torch.Tensor, rewards: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``r(a) - r(argmax score)``: ``(B, n)``.

    >>> greedy_advantage(torch.tensor([[0.1, 0.9, 0.5]]), torch.tensor([[1.0, 0.2, 0.6]]), torch.tensor([[0, 2]]))
    tensor([[0.8000, 0.4000]])
    """
    greedy = torch.gather(rewards, 1, scores.argmax(-1, keepdim=True))
    return torch.gather(rewards, 1, actions) - greedy


@BASELINES.register("group")
def group_advantage(scores: torch.Tensor, rewards: torch.Tensor, actions: torch.Tensor, eps: float = 1e-6,
                    ) -> torch.Tensor:
    """GRPO-style: ``(r(a) - mean_Q r) / (std_Q r + eps)`` (population std over the queries): ``(B, n)``.

    >>> group_advantage(torch.zeros(1, 4), torch.tensor([[0.0, 1.0, 0.0, 1.0]]), torch.tensor([[1, 2]]))
    tensor([[ 1.0000, -1.0000]])
    """
    mean = rewards.mean(-1, keepdim=True)
    std = rewards.std(-1, unbiased=False, keepdim=True)
    return (torch.gather(rewards, 1, actions) - mean) / (std + eps)


def reinforce_loss(scores: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    """``-mean(A * log pi(a))`` over samples and batch with ``pi = softmax(scores / temperature)``;
    the advantages are detached.

    >>> s = torch.tensor([[0.0, 0.0]], requires_grad=True)
    >>> loss = reinforce_loss(s, torch.tensor([[0]]), torch.tensor([[1.0]]), 0.5)
    >>> round(loss.item(), 4), [round(g, 4) for g in torch.autograd.grad(loss, s)[0][0].tolist()]
    (0.6931, [-1.0, 1.0])
    """
    logp = torch.gather(policy_log_probs(scores, temperature), 1, actions)
    return -(advantages.detach() * logp).mean()


@DETR_RL_OBJECTIVES.register("girl")
def girl_objective(out: DetrOutput, batch: Batch, epoch: int, cfg: DetrConfig,
                   generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """The three-stage GIRL-DETR loss of one batch (final decoder layer)."""
    rl = cfg.rl
    spans, logits, pred_iou = out.final
    scores = policy_scores(logits, rl.policy_score)
    c_s, c_r = rl_coefficients(epoch, rl)
    l_top1 = top1_loss(spans, scores, batch.spans, batch.span_mask)
    loss = rl.top1_coef * l_top1
    logs = {"top1": l_top1.item(), "c_S": c_s, "c_R": c_r}
    if c_s > 0:
        l_span = topk_weighted_span_loss(spans, scores, batch.spans, batch.span_mask, rl.top_k)
        loss = loss + c_s * l_span
        logs["span"] = l_span.item()
    ious, _ = best_gt_iou(spans.detach(), batch.spans, batch.span_mask)
    rewards = DETR_REWARDS.get(rl.reward)(ious, rl.reward_threshold)
    logs["reward_greedy"] = float(torch.gather(rewards, 1, scores.argmax(-1, keepdim=True)).mean())
    if c_r > 0:
        actions = sample_actions(scores, rl.temperature, rl.n_samples, generator)
        adv = BASELINES.get(rl.baseline)(scores.detach(), rewards, actions)
        l_rf = reinforce_loss(scores, actions, adv, rl.temperature)
        loss = loss + c_r * l_rf
        logs["reinforce"] = l_rf.item()
    if rl.iou_coef > 0:
        l_iou = iou_head_loss(pred_iou, spans, batch.spans, batch.span_mask)
        loss = loss + rl.iou_coef * l_iou
        logs["iou"] = l_iou.item()
    return loss, logs


@DETR_RL_OBJECTIVES.register("supervised")
def supervised_objective(out: DetrOutput, batch: Batch, epoch: int, cfg: DetrConfig,
                         generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """Control: the supervised set losses (matching, L1, GIoU, CE, IoU head) on the heads alone."""
    return set_criterion(out, batch.spans, batch.span_mask, batch.saliency, batch.video_mask, cfg.loss)


def freeze_all_but(model: torch.nn.Module, heads: list[str]) -> list[str]:
    """Set ``requires_grad`` only on parameters under the named top-level modules; return their names."""
    names = []
    for name, p in model.named_parameters():
        keep = name.split(".")[0] in heads
        p.requires_grad_(keep)
        if keep:
            names.append(name)
    if not names:
        raise ValueError(f"rl.heads {heads} match no parameter of the model")
    return names


def changed_parameters(before: dict[str, torch.Tensor], model: torch.nn.Module) -> list[str]:
    """Names of parameters whose tensor differs (``torch.equal``) from ``before``."""
    return [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach().cpu())]


def assert_isolated(changed: list[str], allowed: list[str]) -> None:
    """Raise ``RuntimeError`` if a parameter outside ``allowed`` changed."""
    leaked = sorted(set(changed) - set(allowed))
    if leaked:
        raise RuntimeError(f"gradient isolation violated: {len(leaked)} frozen parameters changed, e.g. {leaked[:5]}")


def check_converged(ck: dict[str, Any], init: str, cfg: DetrConfig, log: Log) -> dict[str, Any] | None:
    """Apply ``rl.on_unconverged`` to the supervised checkpoint's ``train_summary``: when its best val epoch is in
    the last ``rl.converged_tail`` of its epochs (:func:`~timegrpo.detr.train.still_improving`), raise
    ``ConfigError`` (``error``) or log a warning (``warn``), saying how to continue. A checkpoint without a
    summary, or from a run without validation, is logged as unchecked. Returns the summary (None: none)."""
    summary = ck.get("train_summary")
    if summary is None:
        log(f"note: {init} records no training summary (not written by `detr train`): convergence not checked")
        return None
    if not summary["validated"]:
        log(f"note: {init} comes from a run without a validation split: the budget of "
            f"{summary['epochs_run']} epochs is the convergence rule")
        return summary
    best, n = summary["best_epoch"], summary["epochs_run"]
    if cfg.rl.on_unconverged == "ignore" or not still_improving(best, n, cfg.rl.converged_tail):
        return summary
    msg = (f"supervised checkpoint {init} was still improving: its best validation epoch is {best + 1} of {n} "
           f"(in the last {cfg.rl.converged_tail:.0%}), and GIRL's RL stage starts from a converged model. Continue "
           f"the supervised run: `timegrpo detr train` with the same recipe and --train.epochs {2 * n} (it resumes "
           f"from supervised/last.ckpt), with --train.patience to stop on the plateau; or pass "
           f"--rl.on_unconverged warn to run RL anyway")
    if cfg.rl.on_unconverged == "error":
        raise ConfigError(msg)
    log(f"warning: {msg}")
    return summary


@dataclass
class RLResult:
    checkpoint: str
    changed_parameters: list[str]
    trainable_parameters: int
    history: list[dict[str, Any]]
    init: str = ""
    supervised: dict[str, Any] | None = None


def _rl_epoch(model: GirlDetr, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], data: Any,
              cfg: DetrConfig, device: torch.device, epoch: int, gen: torch.Generator) -> dict[str, float]:
    objective = DETR_RL_OBJECTIVES.get(cfg.rl.objective)
    sums: dict[str, float] = {}
    n = 0
    for batch in batches(data, cfg.rl.batch_size, shuffle=True, seed=cfg.seed + 1, epoch=epoch):
        batch = batch.to(device)
        out = model(batch.video, batch.video_mask, batch.text, batch.text_mask)
        loss, logs = objective(out, batch, epoch, cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.rl.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.rl.grad_clip)
        opt.step()
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {k: round(v / max(n, 1), 5) for k, v in sums.items()}


def run_rl(cfg: DetrConfig, log: Log = print, *, out_name: str = "rl") -> RLResult:
    """Run the RL stage from ``rl.init`` (default ``{run_dir}/supervised/best.ckpt``) after
    :func:`check_converged`; write ``{run_dir}/{out_name}/final.ckpt`` and ``log.jsonl``; raise if a frozen
    parameter changed."""
    device = setup_torch(cfg)
    data = load_data(cfg, ("train", "val"), log)
    init = cfg.rl.init or str(cfg.run_dir() / "supervised" / "best.ckpt")
    ck = load_checkpoint(init)
    summary = check_converged(ck, init, cfg, log)
    model = model_from_checkpoint(ck).to(device).eval()
    before = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
    trainable = freeze_all_but(model, cfg.rl.heads)
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    log(f"RL from {init}: {n_params} trainable parameters in {cfg.rl.heads}; objective {cfg.rl.objective}")
    opt = torch.optim.AdamW(params, lr=cfg.rl.lr, weight_decay=cfg.rl.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 17)
    out = cfg.run_dir() / out_name
    (out / "log.jsonl").unlink(missing_ok=True)
    history = []
    for epoch in range(cfg.rl.epochs):
        t0 = time.time()
        rec: dict[str, Any] = {"epoch": epoch, **_rl_epoch(model, opt, params, data["train"], cfg, device, epoch, gen)}
        rec["seconds"] = round(time.time() - t0, 2)
        last = epoch == cfg.rl.epochs - 1
        if "val" in data and (last or (cfg.rl.eval_every and (epoch + 1) % cfg.rl.eval_every == 0)):
            rec["val"] = evaluate(model, data["val"], device)
        history.append(rec)
        append_jsonl(out / "log.jsonl", rec)
        log(json.dumps(rec))
    changed = changed_parameters(before, model)
    assert_isolated(changed, trainable)
    path = out / "final.ckpt"
    save_checkpoint(path, model=model.state_dict(), config=to_dict(cfg) | {"model": ck["config"]["model"]},
                    video_dim=ck["video_dim"], text_dim=ck["text_dim"], changed_parameters=changed, init=init)
    return RLResult(str(path), changed, n_params, history, init, summary)
