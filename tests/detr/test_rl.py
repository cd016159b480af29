"""Gradient-isolated RL: the schedule, the three losses by hand, the baselines, and isolation after a real stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from timegrpo.config.core import ConfigError
from timegrpo.detr.config import DetrRLConfig, load_detr_config
from timegrpo.detr.rl import (
    BASELINES,
    DETR_REWARDS,
    assert_isolated,
    changed_parameters,
    check_converged,
    freeze_all_but,
    greedy_advantage,
    group_advantage,
    reinforce_loss,
    rl_coefficients,
    run_rl,
    sample_actions,
    top1_loss,
    topk_weighted_span_loss,
)
from timegrpo.detr.train import load_checkpoint, train_supervised

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "detr"


@pytest.mark.parametrize(("recipe", "p1", "p2", "rho"), [("charades_sta.yaml", 8, 12, 0.03),
                                                         ("qvhighlights.yaml", 20, 20, 0.05),
                                                         ("tacos.yaml", 10, 10, 0.02)])
def test_recipes_carry_the_spec_schedule(recipe: str, p1: int, p2: int, rho: float) -> None:
    rl = load_detr_config(RECIPES / recipe).rl
    assert (rl.p1, rl.p2, rl.rho) == (p1, p2, rho)
    assert rl_coefficients(p1 - 1, rl) == (0.0, 0.0)
    assert rl_coefficients(p2, rl)[0] == pytest.approx(rho)
    assert rl_coefficients(p2 + rl.reinforce_ramp - 1, rl)[1] == pytest.approx(rho)


def test_charades_schedule_with_cosine_decay() -> None:
    cfg = DetrRLConfig(p1=8, p2=12, rho=0.03, reinforce_ramp=10, cosine_decay=True, decay_floor=0.2, epochs=42)
    assert rl_coefficients(9, cfg) == pytest.approx((0.012, 0.0))  # c_S at 2 of the 5 ramp epochs 8..12
    assert rl_coefficients(11, cfg) == pytest.approx((0.024, 0.0))  # one epoch before p2: not yet rho
    assert rl_coefficients(12, cfg) == pytest.approx((0.03, 0.003))  # rho at p2, where REINFORCE starts
    assert rl_coefficients(21, cfg) == pytest.approx((0.03, 0.03))  # both at rho
    # the decay runs from epoch 21 (first at full rho) to the last epoch 41
    assert rl_coefficients(31, cfg) == pytest.approx((0.018, 0.018))  # half way down: (0.03 + 0.006) / 2
    assert rl_coefficients(41, cfg) == pytest.approx((0.006, 0.006))  # rho / 5


def test_span_ramp_reaches_rho_at_p2_or_one_epoch_early() -> None:
    to_p2 = DetrRLConfig(p1=2, p2=4, rho=0.06, reinforce_ramp=2)
    assert [rl_coefficients(e, to_p2)[0] for e in range(6)] == pytest.approx([0, 0, 0.02, 0.04, 0.06, 0.06])
    early = DetrRLConfig(p1=2, p2=4, rho=0.06, reinforce_ramp=2, span_ramp="before_p2")
    assert [rl_coefficients(e, early)[0] for e in range(6)] == pytest.approx([0, 0, 0.03, 0.06, 0.06, 0.06])
    with pytest.raises(ConfigError, match="span_ramp"):
        DetrRLConfig(span_ramp="p3")


def test_top1_loss_only_moves_the_top_query() -> None:
    spans = torch.tensor([[[0.2, 0.2], [0.6, 0.2], [0.5, 0.1]]], requires_grad=True)
    scores = torch.tensor([[0.1, 0.8, 0.3]])
    gts = torch.tensor([[[0.5, 0.2], [0.1, 0.1]]])
    loss = top1_loss(spans, scores, gts, torch.tensor([[True, True]]))
    # top query [0.5, 0.7] vs best GT [0.4, 0.6]: L1 mean(0.1, 0) = 0.05; IoU 0.1/0.3, hull 0.3 -> 1 - 1/3
    assert loss.item() == pytest.approx(0.05 + 2 / 3, rel=1e-5)
    loss.backward()
    g = spans.grad[0]
    assert g[0].abs().sum() == 0 and g[2].abs().sum() == 0 and g[1, 0] > 0  # center pushed left


def test_topk_weights_favor_the_worse_queries() -> None:
    # query 0 is perfect (weight 0), query 1 has IoU 1/3 (weight 1), query 2 not in the top 2
    spans = torch.tensor([[[0.3, 0.4], [0.5, 0.4], [0.9, 0.1]]], requires_grad=True)
    loss = topk_weighted_span_loss(spans, torch.tensor([[0.9, 0.8, 0.1]]), torch.tensor([[[0.3, 0.4]]]),
                                   torch.tensor([[True]]), k=2)
    assert loss.item() == pytest.approx(0.1)
    loss.backward()
    assert spans.grad[0, 0].abs().sum() == 0 and spans.grad[0, 2].abs().sum() == 0 and spans.grad[0, 1, 0] > 0


def test_reinforce_gradient_raises_better_than_greedy_queries() -> None:
    scores = torch.tensor([[0.6, 0.5, 0.2]], requires_grad=True)
    rewards = torch.tensor([[0.3, 0.9, 0.1]])
    actions = torch.tensor([[1, 2, 0]])
    adv = greedy_advantage(scores.detach(), rewards, actions)
    assert adv[0].tolist() == pytest.approx([0.6, -0.2, 0.0])
    loss = reinforce_loss(scores, actions, adv, temperature=0.5)
    p = torch.softmax(scores.detach() / 0.5, -1)[0]
    expect = -(0.6 * p[1].log() - 0.2 * p[2].log()) / 3
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    loss.backward()
    assert scores.grad[0, 1] < 0 < scores.grad[0, 2]  # descent raises query 1, lowers query 2


def test_rewards_are_registered_and_hit_is_r1_of_the_drawn_query() -> None:
    iou = torch.tensor([[0.2, 0.69999, 0.7, 1.0]])
    assert DETR_REWARDS.get("iou")(iou, 0.7) is iou
    assert DETR_REWARDS.get("hit")(iou, 0.7).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert DETR_REWARDS.get("hit")(iou, 0.5).tolist() == [[0.0, 1.0, 1.0, 1.0]]
    assert set(DETR_REWARDS.names()) == {"iou", "hit"}


def test_group_baseline_is_zscore_and_registered() -> None:
    rewards = torch.tensor([[0.2, 0.4, 0.6, 0.8]])
    adv = group_advantage(torch.zeros(1, 4), rewards, torch.tensor([[3, 0]]))
    std = rewards.std(unbiased=False)
    assert adv[0].tolist() == pytest.approx([0.3 / std.item(), -0.3 / std.item()], rel=1e-5)
    assert set(BASELINES.names()) == {"greedy", "group"}


def test_sample_actions_follows_the_tempered_policy() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.tensor([[1.0, 0.0, 0.0]]).expand(1, 3)
    a = sample_actions(scores, 0.5, 20000, g)
    p0 = (a == 0).float().mean().item()
    e2 = torch.exp(torch.tensor(2.0)).item()
    assert p0 == pytest.approx(e2 / (e2 + 2), abs=0.015)


def test_assert_isolated_catches_a_changed_frozen_parameter() -> None:
    model = torch.nn.ModuleDict({"span_head": torch.nn.Linear(2, 2), "encoder": torch.nn.Linear(2, 2)})
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    allowed = freeze_all_but(model, ["span_head"])
    assert allowed == ["span_head.weight", "span_head.bias"]
    assert not model["encoder"].weight.requires_grad
    with torch.no_grad():
        model["span_head"].bias += 1
    assert_isolated(changed_parameters(before, model), allowed)
    with torch.no_grad():
        model["encoder"].weight[0, 0] += 1e-6
    with pytest.raises(RuntimeError, match="encoder.weight"):
        assert_isolated(changed_parameters(before, model), allowed)


@pytest.mark.parametrize("objective", ["girl", "supervised"])
def test_rl_stage_changes_only_the_heads(synth_root: Path, tmp_path: Path, make_config, objective: str) -> None:
    cfg = make_config(synth_root, out_root=str(tmp_path), train={"epochs": 1, "eval_every": 0},
                      rl={"epochs": 3, "objective": objective, "baseline": "group"})
    sup = train_supervised(cfg, log=lambda s: None)
    result = run_rl(cfg, log=lambda s: None)
    heads = ("span_head.", "class_head.", "iou_head.")
    assert result.changed_parameters and all(n.startswith(heads) for n in result.changed_parameters)
    assert {n.split(".")[0] for n in result.changed_parameters} == {"span_head", "class_head", "iou_head"}
    before, after = load_checkpoint(sup["best"])["model"], load_checkpoint(result.checkpoint)["model"]
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]) != name.startswith(heads), name
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    if objective == "girl":
        # p1 0, p2 1, rho 0.05: c_S 0.025 then rho at p2, where c_R starts (ramp 1: rho at once)
        assert result.history[0]["c_S"] == pytest.approx(0.025) and result.history[0]["c_R"] == 0.0
        assert result.history[1]["c_S"] == pytest.approx(0.05) and result.history[1]["c_R"] == pytest.approx(0.05)
        assert "reinforce" in result.history[1] and "reinforce" not in result.history[0]


@pytest.mark.parametrize(("summary", "outcome"), [
    ({"best_epoch": 23, "epochs_run": 24, "stop_reason": "budget", "validated": True}, "unconverged"),
    ({"best_epoch": 21, "epochs_run": 24, "stop_reason": "budget", "validated": True}, "unconverged"),
    ({"best_epoch": 20, "epochs_run": 24, "stop_reason": "budget", "validated": True}, "ok"),
    ({"best_epoch": 49, "epochs_run": 60, "stop_reason": "plateau", "validated": True}, "ok"),
    ({"best_epoch": 9, "epochs_run": 10, "stop_reason": "budget", "validated": False}, "unchecked"),
    (None, "unchecked"),
])
def test_rl_checks_that_the_supervised_run_converged(summary: dict | None, outcome: str) -> None:
    ck = {} if summary is None else {"train_summary": summary}
    logs: list[str] = []
    for rule in ("error", "warn", "ignore"):
        cfg = load_detr_config(None, ["--rl.on_unconverged", rule])
        if outcome == "unconverged" and rule == "error":
            with pytest.raises(ConfigError, match=rf"best validation epoch is {summary['best_epoch'] + 1} of 24 "
                                                  r"\(in the last 10%\).*--train.epochs 48.*--rl.on_unconverged warn"):
                check_converged(ck, "sup/best.ckpt", cfg, logs.append)
            continue
        assert check_converged(ck, "sup/best.ckpt", cfg, logs.append) == summary
    warnings = [line for line in logs if line.startswith("warning:")]
    assert len(warnings) == (1 if outcome == "unconverged" else 0)
    assert any(line.startswith("note:") for line in logs) == (outcome == "unchecked")


def test_run_rl_refuses_an_unconverged_start(synth_root: Path, tmp_path: Path, make_config) -> None:
    cfg = make_config(synth_root, out_root=str(tmp_path), train={"epochs": 1}, rl={"on_unconverged": "error"})
    train_supervised(cfg, lambda s: None)  # one epoch: its best epoch is its last
    with pytest.raises(ConfigError, match="best validation epoch is 1 of 1"):
        run_rl(cfg, lambda s: None)
    assert not (tmp_path / "run/rl/final.ckpt").exists()
