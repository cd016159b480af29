"""Rewards report what they parsed (TRL's ``log_extra``): the columns of ``iou``/``tiou`` in strict and tolerant
mode on a hand-worked table, the first-reporter-wins rule of a RewardSet, and rewards that do not take it."""

from __future__ import annotations

import sys
import textwrap

import pytest

from timegrpo.rewards import RewardError, RewardSet, get_reward

GT, D = [[10.0, 30.0]], 100.0

# (completion, strict (pred_start, pred_end, iou), tolerant (pred_start, pred_end, iou)); GT (10, 30), D 100
TABLE = [
    ("<answer>10 to 20</answer>", (10.0, 20.0, 0.5), (10.0, 20.0, 0.5)),  # 10 / 20
    ("<answer>10-20</answer>", (None, None, 0.0), (10.0, 20.0, 0.5)),  # Time-R1 needs " to "
    ("<answer>0 to 250</answer>", (0.0, 250.0, 20 / 250), (0.0, 100.0, 20 / 100)),  # tolerant clamps to D
    ("<answer>20 to 10</answer>", (20.0, 10.0, 0.0), (None, None, 0.0)),  # reversed: kept by Time-R1
    ("<answer>1:05 to 1:20</answer>", (5.0, 1.0, 0.0), (65.0, 80.0, 0.0)),  # Time-R1 reads "05 to 1"
    ("no answer", (None, None, 0.0), (None, None, 0.0)),
]
TEXTS = [row[0] for row in TABLE] + ["<answer>10 to 20</answer>"]
COLUMNS = {"windows": [GT] * len(TABLE) + [[]], "duration": [D] * len(TABLE) + [None]}  # the last: no GT


def _expected(mode: int) -> dict[str, list]:
    rows = [row[mode] for row in TABLE] + [(None, None, None)]  # no GT: nothing parsed, iou not applicable
    return {"pred_start": [r[0] for r in rows], "pred_end": [r[1] for r in rows], "iou": [r[2] for r in rows]}


def _logged(name: str, **options) -> tuple[list, dict[str, list]]:
    got: dict[str, list] = {}
    out = get_reward(name, **options)(TEXTS, **COLUMNS, log_extra=lambda k, v: got.update({k: v}))
    return out, got


@pytest.mark.parametrize("name", ["iou", "tiou"])
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "tolerant"])
def test_iou_rewards_report_the_span_they_parsed(name, strict):
    out, got = _logged(name, strict=strict)
    expected = _expected(1 if strict else 2)
    assert got.keys() == expected.keys()
    assert got["pred_start"] == expected["pred_start"] and got["pred_end"] == expected["pred_end"]
    assert got["iou"] == [None if v is None else pytest.approx(v) for v in expected["iou"]]
    assert out == get_reward(name, strict=strict)(TEXTS, **COLUMNS)  # reporting changes no reward value
    if name == "iou":
        assert out == got["iou"]  # the plain IoU is the iou reward itself


def test_tiou_values_next_to_the_reported_iou():
    # strict (0, 250): IoU 0.08 * (1 - |0.1 - 0|) * (1 - |0.3 - 2.5|) = -0.0864; tolerant (0, 100): 0.2 * 0.9 * 0.3
    out, got = _logged("tiou", strict=True)
    assert out[2] == pytest.approx(-0.0864) and got["iou"][2] == pytest.approx(0.08)
    out, got = _logged("tiou")
    assert out[2] == pytest.approx(0.054) and got["iou"][2] == pytest.approx(0.2)


def test_reward_set_collects_columns_first_reporter_wins():
    strict_first = RewardSet([{"name": "tiou", "label": "tiou_strict", "options": {"strict": True}}, "iou", "format"])
    b = strict_first(TEXTS, **COLUMNS)
    assert b.extra == _expected(1) | {"iou": [pytest.approx(v) if v else v for v in _expected(1)["iou"]]}
    tolerant_first = RewardSet(["iou", {"name": "tiou", "label": "tiou_strict", "options": {"strict": True}}])
    b = tolerant_first(TEXTS, **COLUMNS)
    assert b.extra["pred_start"] == _expected(2)["pred_start"] and b.extra["iou"] == b.per_func["iou"]
    assert RewardSet(["format"])(TEXTS, **COLUMNS).extra == {}  # nothing reported
    with pytest.raises(ValueError, match="do not pass one"):
        strict_first(TEXTS, **COLUMNS, log_extra=print)


@pytest.fixture
def reward_module(tmp_path, monkeypatch):
    (tmp_path / "logging_rewards.py").write_text(textwrap.dedent("""
        def explicit(completions, windows):  # no **kwargs, no log_extra: must still work
            return [float(len(w)) for w in windows]

        def declared(completions, windows, log_extra=None):  # takes log_extra by name only
            log_extra("n_windows", [len(w) for w in windows])
            return [1.0] * len(completions)

        def fragile(completions, windows, log_extra, **columns):  # reports, then fails on an empty sample
            log_extra("n_windows", [len(w) for w in windows])
            return [1.0 / len(w) for w in windows]

        def short(completions, log_extra, **columns):
            log_extra("x", [1])
            return [0.0] * len(completions)

        def twice(completions, log_extra, **columns):
            log_extra("x", [1] * len(completions))
            log_extra("x", [2] * len(completions))
            return [0.0] * len(completions)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "logging_rewards"
    sys.modules.pop("logging_rewards", None)


def test_rewards_without_log_extra_still_work(reward_module):
    rs = RewardSet([f"{reward_module}:explicit", f"{reward_module}:declared", "iou"])
    b = rs(["<answer>0 to 10</answer>", "x"], windows=[[[0, 10]], [[0, 1], [2, 3]]])
    assert b.per_func == {f"{reward_module}:explicit": [1.0, 2.0], f"{reward_module}:declared": [1.0, 1.0],
                          "iou": [1.0, 0.0]}
    assert b.extra == {"n_windows": [1, 2], "pred_start": [0.0, None], "pred_end": [10.0, None], "iou": [1.0, 0.0]}
    # TRL passes log_extra to every reward: the wrapper drops it for a reward that does not take it
    assert get_reward(f"{reward_module}:explicit")(["a"], windows=[[[0, 1]]], log_extra=print) == [1.0]
    with pytest.raises(TypeError, match=r"no option\(s\) \['log_extra'\]"):  # a hook, not an option
        get_reward("iou", log_extra=print)


def test_bad_reports_are_errors_and_a_failing_reward_is_rerun_quietly(reward_module):
    with pytest.raises(RewardError, match=r"reward 'logging_rewards:short' reported 1 values of column 'x' for 2"):
        RewardSet([f"{reward_module}:short"])(["a", "b"])
    with pytest.raises(RewardError, match=r"reported column 'x' twice"):
        RewardSet([f"{reward_module}:twice"])(["a"])
    # the one-sample re-runs that find the failing sample do not report into the set's columns
    with pytest.raises(RewardError, match=r"raised ZeroDivisionError: .* on sample 2"):
        RewardSet([f"{reward_module}:fragile"])(["a", "b", "c"], windows=[[[0, 1]], [[0, 1]], []])
