"""What the trainer passes to every reward besides its hooks: TRL's reward call for G completions per sample.

:func:`reward_call` builds TRL 1.16's keywords (``GRPOTrainer._calculate_rewards``): ``prompts`` (each completion's
chat messages), ``completions`` in TRL's conversational form (the prompts are chats), ``completion_ids`` and the
sample columns (:func:`reward_columns`); :func:`trainer_state` the ``trainer_state`` (a ``transformers.TrainerState``,
as TRL passes its trainer's). The trainer adds ``log_extra`` / ``log_metric`` through
:class:`timegrpo.rewards.RewardSet`. Rows are prompt-major: completions ``i*G .. i*G+G-1`` belong to sample ``i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from timegrpo.data.schema import Sample
from timegrpo.prompts import sample_messages
from timegrpo.rewards.base import PROTOCOL_KEYWORDS

#: The :class:`Sample` fields passed as columns (``meta`` is spread into its own keys).
SAMPLE_COLUMNS = tuple(f.name for f in fields(Sample) if f.name != "meta")


def reward_columns(samples: Sequence[Sample], num_generations: int) -> dict[str, list[Any]]:
    """Per-completion reward columns (TRL passes every dataset column): each sample's fields repeated
    ``num_generations`` times: ``qid``, ``vid``, ``video``, ``duration``, ``query``, ``windows`` (as lists),
    ``video_start``, ``video_end``, and every key of ``meta`` present in any sample (``answer``, ``options``, ...),
    None where a sample lacks it. A ``meta`` key named like a field or a protocol keyword is an error.

    >>> s = Sample("7", "v", None, 30.0, "jump", [(1.0, 2.0)], meta={"answer": "B"})
    >>> cols = reward_columns([s], 2)
    >>> cols["windows"], cols["duration"], cols["answer"]
    ([[[1.0, 2.0]], [[1.0, 2.0]]], [30.0, 30.0], ['B', 'B'])
    """
    meta_keys = sorted({k for s in samples for k in s.meta})
    taken = sorted(set(meta_keys) & (set(SAMPLE_COLUMNS) | set(PROTOCOL_KEYWORDS)))
    if taken:
        qid = next(s.qid for s in samples if set(s.meta) & set(taken))
        raise ValueError(f"sample {qid!r}: meta key(s) {taken} clash with the reward columns / keywords of the same "
                         "name; rename them in the annotation file")
    cols: dict[str, list[Any]] = {name: [] for name in (*SAMPLE_COLUMNS, *meta_keys)}
    for s in samples:
        row = {name: getattr(s, name) for name in SAMPLE_COLUMNS}
        row["windows"] = [[float(a), float(b)] for a, b in s.windows]
        for _ in range(num_generations):
            for name in SAMPLE_COLUMNS:
                cols[name].append(row[name])
            for k in meta_keys:
                cols[k].append(s.meta.get(k))
    return cols


def conversational(texts: Sequence[str]) -> list[list[dict[str, str]]]:
    """Completions in TRL's conversational form, one assistant message each.

    >>> conversational(["<answer>1 to 2</answer>"])
    [[{'role': 'assistant', 'content': '<answer>1 to 2</answer>'}]]
    """
    return [[{"role": "assistant", "content": t}] for t in texts]


def reward_call(samples: Sequence[Sample], num_generations: int, completions: Sequence[str],
                completion_ids: Sequence[Sequence[int]], template: Any, *, video_first: bool = False
                ) -> dict[str, Any]:
    """TRL's reward keywords for the ``G = num_generations`` decoded ``completions`` (and their token ids, up to and
    including EOS) of each of ``samples``, prompted with ``template``: ``prompts`` (:func:`sample_messages`, a
    fresh copy per completion), ``completions`` (:func:`conversational`), ``completion_ids`` and
    :func:`reward_columns`."""
    n = len(samples) * num_generations
    if len(completions) != n or len(completion_ids) != n:
        raise ValueError(f"{len(completions)} completions and {len(completion_ids)} id rows for {len(samples)} "
                         f"samples x {num_generations} generations")
    prompts = [sample_messages(s, template, video_first=video_first) for s in samples for _ in range(num_generations)]
    return {"prompts": prompts, "completions": conversational(completions),
            "completion_ids": [list(map(int, ids)) for ids in completion_ids],
            **reward_columns(samples, num_generations)}


def trainer_state(state: Any = None, **values: Any) -> Any:
    """A ``transformers.TrainerState`` (new, or ``state`` updated in place) with ``values`` set, e.g.
    ``global_step`` (optimiser steps done), ``max_steps``, ``epoch`` (fractional passes over the data),
    ``num_train_epochs``, ``train_batch_size``, ``logging_steps``, ``save_steps``, ``is_world_process_zero``,
    ``log_history``. An unknown name is an error (TRL passes its trainer's state; a reward reads its attributes).

    >>> trainer_state(global_step=3, max_steps=10, epoch=0.5).global_step
    3
    """
    from transformers import TrainerState

    state = TrainerState() if state is None else state
    for name, value in values.items():
        if not hasattr(state, name):
            raise AttributeError(f"transformers.TrainerState has no attribute {name!r}")
        setattr(state, name, value)
    return state
