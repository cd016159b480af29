"""The reward columns of a batch: what every reward function receives besides the completions (TRL protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from timegrpo.data.schema import Sample


def reward_columns(samples: Sequence[Sample], num_generations: int) -> dict[str, list[Any]]:
    """Per-completion reward columns (TRL protocol): each sample's fields repeated ``num_generations`` times.

    ``windows`` and ``duration`` always; ``qid`` and ``query``; and every key of ``meta`` present in any sample
    (``answer``, ``options``, ...), None where a sample lacks it.

    >>> s = Sample("7", "v", None, 30.0, "jump", [(1.0, 2.0)], meta={"answer": "B"})
    >>> cols = reward_columns([s], 2)
    >>> cols["windows"], cols["duration"], cols["answer"]
    ([[[1.0, 2.0]], [[1.0, 2.0]]], [30.0, 30.0], ['B', 'B'])
    """
    cols: dict[str, list[Any]] = {"windows": [], "duration": [], "qid": [], "query": []}
    meta_keys = sorted({k for s in samples for k in s.meta})
    for k in meta_keys:
        cols.setdefault(k, [])
    for s in samples:
        for _ in range(num_generations):
            cols["windows"].append([[float(a), float(b)] for a, b in s.windows])
            cols["duration"].append(s.duration)
            cols["qid"].append(s.qid)
            cols["query"].append(s.query)
            for k in meta_keys:
                cols[k].append(s.meta.get(k))
    return cols
