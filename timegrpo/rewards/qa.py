"""Multiple-choice reward ``answer_letter``: 1.0 when the answered option letter is the right one.

The letter is read from the LAST ``<answer>`` block by :func:`parse_letter`; the ground truth comes from the
``answer`` column as a letter (``"B"``, ``"(B)"``), an option index (``1``) or the option's text (matched,
case-insensitively, against the ``options`` column). The metrics (NExT-GQA Acc@GQA, ReXTime Acc) use the same
two functions.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from timegrpo.rewards.base import column, completion_text, register_reward
from timegrpo.spans import last_answer_block

_PAREN_RE = re.compile(r"\(([A-Z])\)")
_LEAD_RE = re.compile(r"^\s*([A-Z])(?:[.):,]|\s*$)")
_KEYWORD_RE = re.compile(r"(?i:option|answer|choice)\s*(?i:is)?\s*:?\s*([A-Z])\b")


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().rstrip(".").split())


def parse_letter(text: str, options: Sequence[str] | None = None, *, allow_bare: bool = False) -> str | None:
    """The option letter a completion answers, or None.

    Read from the LAST ``<answer>`` block (the whole text with ``allow_bare`` when there is none), the first
    rule that matches wins: the last ``(X)`` (Time-R1's MCQ parsing); a letter opening the block and followed by
    punctuation or nothing (``B``, ``B.``, ``B) ...``; not ``A dog``); ``option/answer/choice [is] X``; the block equal to one option's text.

    >>> [parse_letter(t) for t in ["<answer>(B) a dog</answer>", "<answer>C. red</answer>",
    ...                            "<answer>The answer is D</answer>", "<answer>a dog</answer>"]]
    ['B', 'C', 'D', None]
    >>> parse_letter("<answer>A dog.</answer>", ["a cat", "a dog"]), parse_letter("<answer>A dog</answer>")
    ('B', None)
    >>> parse_letter("B", allow_bare=True)
    'B'
    """
    block = last_answer_block(text)
    if block is None:
        if not allow_bare:
            return None
        block = text
    found = _PAREN_RE.findall(block)
    if found:
        return found[-1]
    if options:
        norm = _norm(block)
        for k, opt in enumerate(options):
            if _norm(str(opt)) == norm:
                return string.ascii_uppercase[k]
    for pattern in (_LEAD_RE, _KEYWORD_RE):
        m = pattern.search(block)
        if m:
            return m.group(1)
    return None


def answer_letter_of(answer: Any, options: Sequence[str] | None = None) -> str | None:
    """The ground-truth letter from a letter, ``(B)``, an option index, or an option's text (with ``options``).

    >>> answer_letter_of("b"), answer_letter_of("(C)"), answer_letter_of(0), answer_letter_of("a dog", ["x", "a dog"])
    ('B', 'C', 'A', 'B')
    """
    if answer is None:
        return None
    if isinstance(answer, int) and not isinstance(answer, bool):
        return string.ascii_uppercase[answer]
    text = str(answer).strip()
    if options:
        norm = _norm(text)
        for k, opt in enumerate(options):
            if _norm(str(opt)) == norm:
                return string.ascii_uppercase[k]
    m = re.fullmatch(r"\(?([A-Za-z])\)?\.?", text)
    if m:
        return m.group(1).upper()
    raise ValueError(f"answer {answer!r} is neither a letter, an option index, nor one of the options {options}")


@register_reward("answer_letter")
def answer_letter_reward(
    completions: Sequence[Any], *, allow_bare: bool = False, **columns: Any
) -> list[float | None]:
    """1.0 when the answered letter equals the ground truth's, 0.0 otherwise (unparsable included).

    Columns: ``answer`` (required; None for a sample without one gives None), ``options`` (optional).

    >>> answer_letter_reward(["<answer>(B)</answer>", "<answer>A</answer>", "x"], answer=["B", 1, 0])
    [1.0, 0.0, 0.0]
    """
    n = len(completions)
    answers = column(columns, "answer", n, "answer_letter")
    options = column(columns, "options", n, "answer_letter", required=False)
    out: list[float | None] = []
    for c, ans, opts in zip(completions, answers, options):
        truth = answer_letter_of(ans, opts)
        if truth is None:
            out.append(None)
            continue
        out.append(1.0 if parse_letter(completion_text(c), opts, allow_bare=allow_bare) == truth else 0.0)
    return out
