"""TRL's reward protocol at its edges: None everywhere is NaN (unscorable); NaN or inf from a reward is an error."""

from __future__ import annotations

import math
import sys

import pytest

from timegrpo.rewards import RewardSet, get_reward
from timegrpo.rewards.base import RewardError


def constant(value):
    def reward(completions, **columns):
        return [value] * len(completions)

    return reward


def test_a_completion_no_reward_applies_to_is_nan_and_left_out_of_the_mean():
    rs = RewardSet(["iou", ("answer_letter", 2.0)])
    out = rs(["<answer>0 to 1</answer>", "<answer>(B) 0 to 1</answer>", "<answer>B</answer>"],
             windows=[[[0, 1]], [], []], answer=[None, "B", None])
    # 1: iou only; 2: answer_letter only (weight 2); 3: neither applies -> NaN, not 0.0
    assert out.total[:2] == [1.0, 2.0] and math.isnan(out.total[2])
    assert out.means()["total"] == 1.5  # the mean over the scorable completions, as TRL's logged `reward`
    assert math.isnan(RewardSet(["iou"])(["x"], windows=[[]]).means()["total"])  # nothing scorable: NaN


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_reward_is_an_error_naming_the_reward_and_the_qid(bad):
    f = get_reward(constant(bad))
    with pytest.raises(RewardError, match=rf"reward 'reward' returned {bad} for sample 0 \(qid 'v1_q7'\)"):
        f(["a", "b"], qid=["v1_q7", "v1_q8"])
    with pytest.raises(RewardError, match=rf"returned {bad} for sample 0; a reward must be finite"):
        f(["a"])  # no qid column: the sample's index


def test_a_reward_set_names_the_reward_function_and_the_qid(tmp_path, monkeypatch):
    (tmp_path / "broken_rewards.py").write_text(
        "def half_nan(completions, **columns):\n"
        "    return [float('nan') if i % 2 else 1.0 for i in range(len(completions))]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        rs = RewardSet(["format", {"name": "broken_rewards:half_nan", "label": "judge"}])
        with pytest.raises(RewardError, match=r"reward 'broken_rewards:half_nan' returned nan for sample 1 \(qid 'q8'\)"):
            rs(["a", "b"], qid=["q7", "q8"])
    finally:
        sys.modules.pop("broken_rewards", None)
