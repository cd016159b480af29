"""TRL 1.16's full reward call: the arguments the trainer builds, rewards that name only some keywords, async
rewards gathered concurrently, ``log_metric``, callables in a RewardSet, and reward models given by path."""

from __future__ import annotations

import asyncio
import inspect

import pytest
import torch

from timegrpo.data.schema import Sample
from timegrpo.rewards import RewardError, RewardModel, RewardSet, get_reward
from timegrpo.rewards.base import is_async_reward
from timegrpo.rewards.columns import reward_call, trainer_state
from timegrpo.rewards.model import chat_text, text_messages

SAMPLES = [Sample("q0", "v0", "/videos/v0.mp4", 10.0, "a red square appears", [(4.0, 8.0)], video_start=1.0,
                  meta={"answer": "B"}),
           Sample("q1", "v1", "/videos/v1.mp4", 20.0, "the circle moves", [(0.0, 5.0), (9.0, 12.0)])]
TEXTS = ["<answer>2 to 6</answer>", "<think>t</think><answer>4 to 8</answer>", "<answer>0 to 5</answer>", "none"]
IDS = [[11, 12, 2], [13, 2], [14, 15, 16, 2], [17]]


def test_reward_call_has_every_argument_in_trl_form():
    call = reward_call(SAMPLES, 2, TEXTS, IDS, "think")
    assert call["completions"] == [[{"role": "assistant", "content": t}] for t in TEXTS]
    assert call["completion_ids"] == IDS
    prompts = call["prompts"]
    assert len(prompts) == 4 and prompts[0] == prompts[1] and prompts[0] is not prompts[1]  # a copy each
    user = prompts[2][-1]
    assert user["role"] == "user" and user["content"][-1] == {"type": "video", "video": "/videos/v1.mp4"}
    assert "the circle moves" in user["content"][0]["text"]
    assert prompts[0][-1]["content"][-1] == {"type": "video", "video": "/videos/v0.mp4", "video_start": 1.0}
    assert call["windows"] == [[[4.0, 8.0]]] * 2 + [[[0.0, 5.0], [9.0, 12.0]]] * 2
    assert call["duration"] == [10.0, 10.0, 20.0, 20.0] and call["qid"] == ["q0", "q0", "q1", "q1"]
    assert call["vid"] == ["v0", "v0", "v1", "v1"] and call["video_end"] == [None] * 4
    assert call["video_start"] == [1.0, 1.0, None, None] and call["answer"] == ["B", "B", None, None]
    # the built-ins read TRL's conversational completions: GT (4, 8) | (0, 5), (9, 12)
    assert get_reward("iou")(**call) == pytest.approx([2 / 6, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="4 completions and 3 id rows for 2 samples x 2"):
        reward_call(SAMPLES, 2, TEXTS, IDS[:3], "think")
    clash = Sample("q9", "v", None, 5.0, "x", [(0.0, 1.0)], meta={"prompts": 1, "query": "y"})
    with pytest.raises(ValueError, match=r"sample 'q9': meta key\(s\) \['prompts', 'query'\] clash"):
        reward_call([clash], 1, ["a"], [[1]], "think")


def test_a_reward_gets_the_keywords_it_names_or_all_with_kwargs():
    seen = {}

    def named(completions, windows, trainer_state):
        seen["named"] = (len(completions), windows, trainer_state.global_step)
        return [1.0] * len(completions)

    def everything(completions, **kwargs):
        seen["everything"] = sorted(kwargs)
        return [0.0] * len(completions)

    call = reward_call(SAMPLES[:1], 1, TEXTS[:1], IDS[:1], "think")
    b = RewardSet([named, ("format", 0.5), everything])(**call, trainer_state=trainer_state(global_step=7))
    assert seen["named"] == (1, [[[4.0, 8.0]]], 7)
    assert seen["everything"] == sorted([*call.keys() - {"completions"}, "trainer_state", "log_extra",
                                         "log_metric"])
    assert b.per_func == {"named": [1.0], "format": [0.0], "everything": [0.0]} and b.total == [1.0]


def test_async_rewards_are_gathered_concurrently():
    """Each async reward waits (a bounded number of loop turns) for the other to have started: run one after the
    other, the first would give up and score -1."""
    started: set[str] = set()

    def waiting(name):
        async def reward(completions, **kwargs):
            started.add(name)
            for _ in range(100):
                if len(started) == 2:
                    return [1.0] * len(completions)
                await asyncio.sleep(0)
            return [-1.0] * len(completions)

        reward.__name__ = name
        return reward

    class Judge:  # an object with an async __call__ is an async reward too (TRL's is_async_callable)
        async def __call__(self, completions, **kwargs):
            return [0.0] * len(completions)

    assert is_async_reward(Judge()) and not is_async_reward(get_reward("format"))
    rs = RewardSet([waiting("judge_a"), "format", waiting("judge_b")])
    assert inspect.iscoroutinefunction(rs.funcs[0]) and not inspect.iscoroutinefunction(rs.funcs[1])
    b = rs(TEXTS[:2])
    assert list(b.per_func) == ["judge_a", "format", "judge_b"]  # the set's order, whatever finished first
    assert b.per_func["judge_a"] == b.per_func["judge_b"] == [1.0, 1.0] and b.total == [2.0, 3.0]
    started.clear()
    assert rs(TEXTS[:1]).total == [2.0]  # the set's event loop is reused on the next call


def test_an_async_reward_failure_names_the_sample():
    async def picky(completions, **kwargs):
        return [1.0 / len(w) for w in kwargs["windows"]]

    with pytest.raises(RewardError, match=r"reward 'picky' raised ZeroDivisionError: .* on sample 1"):
        RewardSet([picky])(["a", "b"], windows=[[[0, 1]], []])


def test_log_metric_collects_every_value_by_name():
    def judge(completions, log_metric, **kwargs):
        log_metric("judge/calls", 1)
        log_metric("judge/score", torch.tensor(0.25))  # a 0-d tensor is a number too
        return [0.5] * len(completions)

    def other(completions, log_metric, **kwargs):
        log_metric("judge/calls", 3.0)
        return [None] * len(completions)

    b = RewardSet([judge, other])(TEXTS[:2])
    assert b.metrics == {"judge/calls": [1.0, 3.0], "judge/score": [0.25]}
    assert b.total == [0.5, 0.5] and b.per_func["other"] == [None, None]

    def bad(completions, log_metric, **kwargs):
        log_metric("judge/text", "high")
        return [0.0] * len(completions)

    with pytest.raises(RewardError, match=r"reward 'bad' logged metric 'judge/text' = 'high'"):
        RewardSet([bad])(TEXTS[:1])
    with pytest.raises(ValueError, match="gives each reward its own 'log_metric'"):
        RewardSet([judge])(TEXTS[:1], log_metric=print)


def test_trainer_state_is_a_transformers_trainer_state():
    from transformers import TrainerState

    state = trainer_state(global_step=3, max_steps=10, epoch=0.75)
    assert isinstance(state, TrainerState) and (state.global_step, state.max_steps, state.epoch) == (3, 10, 0.75)
    assert trainer_state(state, global_step=4) is state and state.global_step == 4  # updated in place
    with pytest.raises(AttributeError, match="no attribute 'global_stpe'"):
        trainer_state(global_stpe=1)


def test_a_reward_model_by_path_scores_the_chat_text(tiny_text, tmp_path):
    """Scored batched and right-padded (as TRL does) = scored one text at a time without padding; the video entry
    is left out of the text; the score depends on the completion."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm_dir = tiny_text[1]
    tok = AutoTokenizer.from_pretrained(rm_dir)  # the reward model's own tokenizer, as TRL loads it
    call = reward_call(SAMPLES, 2, TEXTS, IDS, "think")
    f = get_reward(str(rm_dir))
    got = f(**call)
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1).eval()
    expected = []
    for p, c in zip(call["prompts"], call["completions"], strict=True):
        text = tok.apply_chat_template(text_messages(p + c), tokenize=False)
        assert text == chat_text(p, c, tok) and "<|video_pad|>" not in text and c[0]["content"] in text
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            expected.append(float(model(input_ids=ids).logits[0, 0]))
    assert got == pytest.approx(expected, abs=1e-5)
    assert len(set(got)) == 4  # the completions differ, so do their scores
    wrapped = f.__wrapped__
    assert isinstance(wrapped, RewardModel) and wrapped.__name__ == "tiny-rm"
    assert not any(p.requires_grad for p in wrapped.model.parameters())
    assert RewardSet([str(rm_dir)]).to("cpu").funcs[0].__wrapped__.model.device.type == "cpu"
    with pytest.raises(KeyError, match="read as a reward model's local folder, but it does not load"):
        get_reward(str(tmp_path))  # a folder that holds no model
