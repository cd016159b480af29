"""Reward lookup (registry, entry points, module:function paths), failure reports, and weighted sums."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from timegrpo.rewards import (
    REWARDS,
    RewardError,
    RewardSet,
    RewardSpec,
    compute_rewards,
    entry_point_names,
    get_reward,
    reward_names,
)

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "timegrpo_example_reward"
BUILTINS = ["answer_format", "answer_letter", "format", "glue_iou", "iou", "tiou"]


def test_builtins_are_registered():
    assert set(BUILTINS) <= set(reward_names())
    for name in BUILTINS:
        assert get_reward(name).__name__ == name


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError) as err:
        get_reward("tIoU")
    msg = str(err.value)
    assert "unknown reward 'tIoU'" in msg
    for name in BUILTINS:
        assert name in msg
    assert "package.module:function" in msg


def test_unknown_option_is_an_error():
    with pytest.raises(TypeError, match=r"reward 'tiou' has no option\(s\) \['strictly'\]"):
        get_reward("tiou", strictly=True)


def test_option_and_column_with_same_name_is_an_error():
    f = get_reward("iou", strict=True)
    with pytest.raises(RewardError, match="both as an option and as a column"):
        f(["<answer>1 to 2</answer>"], windows=[[[1, 2]]], strict=[False])


def test_missing_column_names_the_reward_and_the_columns():
    with pytest.raises(RewardError, match=r"reward 'iou' needs a 'windows' column; the columns given were: duration"):
        get_reward("iou")(["x"], duration=[3.0])


@pytest.fixture
def path_module(tmp_path, monkeypatch):
    """A module ``my_rewards`` on sys.path with a good, a raising and a malformed reward."""
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def shout(completions, **columns):
            return [float(c.isupper()) for c in completions]

        def fragile(completions, windows, **columns):
            return [1.0 / len(w) for w in windows]

        def wrong_length(completions, **columns):
            return [1.0]

        def wrong_type(completions, **columns):
            return ["high" for _ in completions]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_rewards"
    sys.modules.pop("my_rewards", None)


def test_module_function_path(path_module):
    f = get_reward(f"{path_module}:shout")
    assert f.__name__ == "my_rewards:shout"
    assert f(["YES", "no"]) == [1.0, 0.0]


def test_bad_paths_say_what_is_wrong(path_module):
    with pytest.raises(KeyError, match="has no attribute 'nope'"):
        get_reward(f"{path_module}:nope")
    with pytest.raises(KeyError, match="cannot import module 'no_such_module_xyz'"):
        get_reward("no_such_module_xyz:f")


def test_raising_reward_is_reported_with_its_name_and_sample(path_module):
    f = get_reward(f"{path_module}:fragile")
    with pytest.raises(RewardError) as err:
        f(["a", "b", "c"], windows=[[[0, 1]], [[0, 1]], []])
    msg = str(err.value)
    assert "reward 'my_rewards:fragile' raised ZeroDivisionError" in msg
    assert "on sample 2" in msg
    assert "'c'" in msg  # the offending completion is quoted


def test_protocol_violations_are_errors(path_module):
    with pytest.raises(RewardError, match="returned 1 values for 2 completions"):
        get_reward(f"{path_module}:wrong_length")(["a", "b"])
    with pytest.raises(RewardError, match="returned 'high' \\(str\\) for sample 0"):
        get_reward(f"{path_module}:wrong_type")(["a"])


def test_trl_call_style_and_signature():
    # TRL calls reward_func(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=...)
    def prompt_aware(prompts, completions, **kwargs):
        return [float(p in c) for p, c in zip(prompts, completions)]

    f = get_reward(prompt_aware)
    out = f(prompts=["cat", "dog"], completions=["a cat", "a cow"], completion_ids=[[1], [2]], trainer_state=None)
    assert out == [1.0, 0.0]
    # ours under TRL's keyword call
    assert get_reward("iou")(prompts=["p"], completions=["<answer>0 to 1</answer>"], windows=[[[0, 2]]],
                             completion_ids=[[1]], trainer_state=object()) == [0.5]


def test_callable_is_wrapped_too():
    def halves(completions, **columns):
        return [0.5] * len(completions)

    f = get_reward(halves)
    assert f.__name__ == "halves" and f(["a", "b"]) == [0.5, 0.5]


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """The example plug-in package pip-installed (no deps, no build isolation) into a temporary target."""
    root = tmp_path_factory.mktemp("plugin")
    src, target = root / "src", root / "site"
    shutil.copytree(PLUGIN_SRC, src)  # build in a copy: setuptools writes build/ and *.egg-info beside the source
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(src)],
        check=True, env=env, capture_output=True,
    )
    assert any(p.name.endswith(".dist-info") for p in target.iterdir())
    return target


@pytest.fixture
def plugin_on_path(installed_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_plugin))
    yield
    sys.modules.pop("timegrpo_example_reward", None)


def test_entry_point_plugin_after_pip_install(plugin_on_path):
    assert {"example_brevity", "example_picky"} <= set(entry_point_names())
    assert "example_brevity" in reward_names()
    f = get_reward("example_brevity", max_chars=10)
    assert f.__name__ == "example_brevity"
    assert f(["", "12345", "a" * 20]) == [1.0, 0.5, 0.0]
    # TRL-style conversational completions reach the plug-in unchanged
    assert f([[{"role": "assistant", "content": "12345"}]]) == [0.5]


def test_entry_point_plugin_failure_names_plugin_and_sample(plugin_on_path):
    with pytest.raises(RewardError, match=r"reward 'example_picky' raised ValueError: .*boom.* on sample 1"):
        get_reward("example_picky")(["fine", "boom!", "fine"])
    # with the trainer's columns the sample is named by its qid and video too
    with pytest.raises(RewardError, match=r"on sample 1 \(qid 'q2', video '/v/b.mp4'\) \(completion: 'boom!'\)"):
        get_reward("example_picky")(["fine", "boom!", "fine"], qid=["q1", "q2", "q3"],
                                    video=["/v/a.mp4", "/v/b.mp4", "/v/c.mp4"])


def test_unknown_name_not_declared_by_any_package():
    """A name no installed package declares: the message lists the built-ins and every installed entry point,
    and says how to plug a reward in."""
    with pytest.raises(KeyError) as err:
        get_reward("timegrpo_no_such_reward_3f9c")
    msg = err.value.args[0]
    assert msg.startswith("unknown reward 'timegrpo_no_such_reward_3f9c'; known: ")
    known = msg.split("; known: ")[1].split(" (or give")[0].split(", ")
    assert known == reward_names() and set(BUILTINS) | set(entry_point_names()) <= set(known)
    assert msg.endswith("(or give a 'package.module:function' path, a reward model's folder or Hub id, or "
                        "install a package with a 'timegrpo.rewards' entry point)")


def test_plugin_not_found_without_install(monkeypatch):
    """With no package declaring entry points (whatever this environment has installed), the plug-in's name is
    unknown and is not listed among the known ones."""
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    registered = REWARDS.names()  # the built-ins, and whatever other tests registered
    assert entry_point_names() == [] and reward_names() == registered and "example_brevity" not in registered
    assert set(BUILTINS) <= set(registered)
    with pytest.raises(KeyError) as err:
        get_reward("example_brevity")
    msg = err.value.args[0]
    assert msg.startswith(f"unknown reward 'example_brevity'; known: {', '.join(registered)} (or give")


def test_reward_set_weights_and_components():
    rs = RewardSet([RewardSpec("tiou", 1.0), RewardSpec("format", 0.5), ("answer_format", 2.0)])
    texts = ["<think>a</think><answer>10 to 20</answer>", "<answer>10 to 30</answer>", "nothing"]
    cols = {"windows": [[[10, 30]]] * 3, "duration": [100.0] * 3}
    out = rs(texts, **cols)
    assert out.per_func == {
        "tiou": [pytest.approx(0.45), 1.0, 0.0],
        "format": [1.0, 0.0, 0.0],
        "answer_format": [0.0, 1.0, 0.0],
    }
    assert out.total == [pytest.approx(0.45 + 0.5), pytest.approx(1.0 + 2.0), 0.0]
    assert rs.funcs[2].__name__ == "answer_format" and rs.weights == [1.0, 0.5, 2.0]
    assert out.means()["format"] == pytest.approx(1 / 3)


def test_reward_set_skips_none_like_trl():
    # sample 1 has no windows: iou is None there, so its total is the format reward alone
    out = compute_rewards(["iou", "format"], ["<think></think><answer>0 to 1</answer>"] * 2,
                          windows=[[[0, 1]], []])
    assert out.per_func["iou"] == [1.0, None]
    assert out.total == [2.0, 1.0]


def test_reward_set_labels_distinguish_the_same_reward_twice():
    with pytest.raises(ValueError, match="appear twice"):
        RewardSet(["iou", "iou"])
    rs = RewardSet([{"name": "iou", "label": "iou_strict", "options": {"strict": True}}, "iou"])
    out = rs(["<answer>0-1</answer>"], windows=[[[0, 1]]])
    assert out.per_func == {"iou_strict": [0.0], "iou": [1.0]}
