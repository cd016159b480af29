"""Multiple-choice reward ``answer_letter``: 1.0 when the answered option letter is the right one.

The letter is read from the LAST ``<answer>`` block by :func:`timegrpo.parsing.parse_letter`; the ground truth
comes from the ``answer`` column as a letter (``"B"``, ``"(B)"``), an option index (``1``) or the option's text
(matched, case-insensitively, against the ``options`` column; :func:`timegrpo.parsing.answer_letter_of`). The
metrics (NExT-GQA Acc@GQA, ReXTime Acc) use the same two functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from timegrpo.parsing import answer_letter_of, parse_letter
from timegrpo.rewards.base import LogExtra, column, completion_text, register_reward


@register_reward("answer_letter")
def answer_letter_reward(
    completions: Sequence[Any], *, allow_bare: bool = False, log_extra: LogExtra | None = None, **columns: Any
) -> list[float | None]:
    """1.0 when the answered letter equals the ground truth's, 0.0 otherwise (unparsable included).

    Columns: ``answer`` (required; None for a sample without one gives None), ``options`` (optional).
    Reports through ``log_extra``: ``pred_letter`` (None when unparsable or not applicable).

    >>> got = {}
    >>> answer_letter_reward(["<answer>(B)</answer>", "<answer>A</answer>", "x"], answer=["B", 1, 0],
    ...                      log_extra=lambda k, v: got.update({k: v}))
    [1.0, 0.0, 0.0]
    >>> got
    {'pred_letter': ['B', 'A', None]}
    """
    n = len(completions)
    answers = column(columns, "answer", n, "answer_letter")
    options = column(columns, "options", n, "answer_letter", required=False)
    out: list[float | None] = []
    letters: list[str | None] = []
    for c, ans, opts in zip(completions, answers, options):
        truth = answer_letter_of(ans, opts)
        letter = None if truth is None else parse_letter(completion_text(c), opts, allow_bare=allow_bare)
        letters.append(letter)
        out.append(None if truth is None else 1.0 if letter == truth else 0.0)
    if log_extra is not None:
        log_extra("pred_letter", letters)
    return out
