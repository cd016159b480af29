"""Rewards written to TRL 1.16's protocol, as a TRL user brings them (``--train.reward_funcs
trl_style_rewards:my_trl_style_reward``; the tests put this folder on the path). ``my_trl_style_reward`` asserts the
form of every argument TRL's ``GRPOTrainer`` passes, reports a column with ``log_extra`` and two scalars with
``log_metric``, and records what it saw in ``CALLS`` (in-process runs read it back)."""

from __future__ import annotations

import asyncio

from transformers import TrainerState

CALLS: list[dict] = []
COLUMNS = ("qid", "vid", "video", "duration", "query", "windows", "video_start", "video_end")


def _check_prompt(prompt, video) -> None:
    assert isinstance(prompt, list) and prompt[-1]["role"] == "user", prompt
    parts = prompt[-1]["content"]
    assert any(p["type"] == "text" and p["text"] for p in parts), parts
    assert [p["video"] for p in parts if p["type"] == "video"] == [video], parts  # the completion's own sample


def my_trl_style_reward(prompts, completions, completion_ids, trainer_state, log_extra, log_metric, **kwargs):
    n = len(completions)
    assert len(prompts) == len(completion_ids) == n
    for prompt, video in zip(prompts, kwargs["video"], strict=True):
        _check_prompt(prompt, video)
    for c in completions:  # TRL's conversational form: one assistant message
        assert isinstance(c, list) and len(c) == 1 and c[0]["role"] == "assistant", c
        assert isinstance(c[0]["content"], str)
    for ids in completion_ids:
        assert isinstance(ids, list) and ids and all(isinstance(t, int) for t in ids), ids
    for name in COLUMNS:
        assert len(kwargs[name]) == n, name
    assert all(isinstance(w, list) and all(len(x) == 2 for x in w) for w in kwargs["windows"])
    assert isinstance(trainer_state, TrainerState)
    assert isinstance(trainer_state.global_step, int) and trainer_state.global_step < trainer_state.max_steps
    CALLS.append({"global_step": trainer_state.global_step, "max_steps": trainer_state.max_steps,
                  "epoch": trainer_state.epoch, "n": n, "qid": list(kwargs["qid"])})
    tokens = [len(ids) for ids in completion_ids]
    log_extra("n_tokens", tokens)
    log_metric("trl_style/global_step", trainer_state.global_step)
    log_metric("trl_style/mean_tokens", sum(tokens) / n)
    return [len(c[0]["content"]) / 50.0 for c in completions]


async def async_judge(prompts, completions, **kwargs):
    """An async reward (an LLM judge would await a client here): 0.5 for a completion holding a digit, else None
    (does not apply)."""
    await asyncio.sleep(0)
    return [0.5 if any(ch.isdigit() for ch in c[0]["content"]) else None for c in completions]


def broken_reward(completions, qid, **kwargs):
    """NaN for the second completion: a bug in a plug-in, which must stop training naming it and the sample."""
    return [float("nan") if i == 1 else 0.0 for i in range(len(completions))]
