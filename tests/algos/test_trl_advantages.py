"""The reward protocol and the advantages against TRL 1.16's ``GRPOTrainer._generate_and_score_completions``.

The same reward functions (a :class:`RewardSet`'s ``funcs`` and ``weights``, which TRL takes as they are) score the
same completions of the same rows on both sides; TRL's own code turns them into advantages (tests/algos/conftest.py).
A completion that no reward applies to is NaN on both sides, out of its group's mean and std, advantage 0.

Departure (a metric only): ``frac_reward_zero_std`` -- TRL counts groups whose std is 0 (under ``scale_rewards:
batch``, whether the batch std is 0), so a group with a single scorable completion (std NaN) is not counted;
:func:`zero_variance_share` counts it per group, since it carries no signal either (its advantages are 0 on both
sides), and dynamic sampling drops it.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from timegrpo.algos.advantages import ADVANTAGES, zero_variance_share
from timegrpo.rewards import RewardSet

G = 4
# (qid, windows, the G completions). exclaim: 0.25 per '!', None for an "abstain" completion; iou: None without windows.
GROUPS = [
    ("a", [[2.0, 6.0]], ["<answer>2 to 6</answer>!", "<answer>0 to 4</answer>", "<answer>4 to 8</answer>!!",
                         "abstain <answer>2 to 6</answer>"]),
    ("b", [], ["abstain", "!!", "abstain", "!!!!"]),  # two scorable completions, two with no reward at all
    ("c", [[0.0, 10.0]], ["<answer>0 to 10</answer>!"] * G),  # identical rewards: zero variance
    ("d", [], ["abstain", "abstain", "!", "abstain"]),  # one scorable completion: no std
]


@pytest.fixture
def rewards(tmp_path, monkeypatch):
    (tmp_path / "abstaining_rewards.py").write_text(textwrap.dedent("""
        def exclaim(completions, **columns):
            return [None if "abstain" in c else 0.25 * c.count("!") for c in completions]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield RewardSet([("iou", 1.0), ("abstaining_rewards:exclaim", 0.5)])
    sys.modules.pop("abstaining_rewards", None)


def rows_and_completions():
    rows, completions = [], []
    for qid, windows, texts in GROUPS:
        for text in texts:
            rows.append({"prompt": f"where is {qid}?", "qid": qid, "windows": windows, "duration": 20.0})
            completions.append(text)
    return rows, completions


def test_unscorable_completions_are_nan_in_the_total(rewards):
    rows, completions = rows_and_completions()
    columns = {k: [r[k] for r in rows] for k in ("qid", "windows", "duration")}
    total = rewards(completions, **columns).total
    assert total[:4] == pytest.approx([1.125, 1 / 3, 1 / 3 + 0.25, 1.0])
    assert [t != t for t in total[4:8]] == [True, False, True, False] and total[5:8:2] == [0.25, 0.5]
    assert total[8:12] == [1.125] * 4
    assert [t != t for t in total[12:]] == [True, True, False, True]


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_same_advantages_as_trl(scale_rewards, rewards, trl_advantages):
    rows, completions = rows_and_completions()
    columns = {k: [r[k] for r in rows] for k in ("qid", "windows", "duration")}
    breakdown = rewards(completions, **columns)
    total = torch.tensor(breakdown.total, dtype=torch.float64)
    ours = ADVANTAGES.get("grpo")(total, G, scale_rewards=scale_rewards)
    theirs, metrics = trl_advantages(rewards.funcs, rows, completions, G, reward_weights=rewards.weights,
                                     scale_rewards=scale_rewards)
    torch.testing.assert_close(ours, theirs.to(torch.float64), rtol=0, atol=1e-6)
    assert ours[4:8].tolist()[0::2] == [0.0, 0.0] and ours[12:].tolist() == [0.0] * 4  # NaN / lone rewards: 0
    assert ours[5] != 0.0  # group b's two scorable completions still learn from each other
    means = breakdown.means()
    assert metrics["reward"] == pytest.approx(means["total"], abs=1e-6)
    for key in rewards.keys:
        assert metrics[f"rewards/{key}/mean"] == pytest.approx(means[key], abs=1e-6)
    # see the docstring; with scale_rewards batch TRL's frac_reward_zero_std tests the batch std instead
    assert metrics["frac_reward_zero_std"] == (0.0 if scale_rewards == "batch" else 0.25)
    assert zero_variance_share(total, G) == 0.5
