"""Format rewards: ``format`` (think/answer template) and ``answer_format`` (no-think: only an answer block).

``format`` is exactly Time-R1's ``format_reward`` (``xiaomi-research/time-r1`` ``main.py``): 1.0 when the
stripped completion fully matches ``<think>.*?</think>\\s*<answer>.*?</answer>`` with dot matching newline,
else 0.0. Because the match must cover the whole string, the lazy ``.*?`` still stretches over later tags: a
completion with two ``<answer>`` blocks after one think block scores 1.0 there, and so it does here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from timegrpo.rewards.base import completion_text, register_reward

THINK_ANSWER_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
#: One answer block whose content holds no further answer tag.
ANSWER_ONLY_RE = re.compile(r"<answer>(?:(?!</?answer>).)*</answer>", re.DOTALL)


@register_reward("format")
def format_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """1.0 if the stripped completion is ``<think>...</think>`` then ``<answer>...</answer>``, else 0.0.

    >>> format_reward(["<think>a</think>\\n<answer>1 to 2</answer>", "<answer>1 to 2</answer>", " <think></think><answer></answer> "])
    [1.0, 0.0, 1.0]
    """
    return [1.0 if THINK_ANSWER_RE.fullmatch(completion_text(c).strip()) else 0.0 for c in completions]


@register_reward("answer_format")
def answer_format_reward(completions: Sequence[Any], **columns: Any) -> list[float | None]:
    """1.0 if the stripped completion is exactly ONE ``<answer>...</answer>`` block (no think), else 0.0.

    >>> answer_format_reward(["<answer>1 to 2</answer>", "<think>x</think><answer>1</answer>",
    ...                       "<answer>1</answer><answer>2</answer>", "1 to 2"])
    [1.0, 0.0, 0.0, 0.0]
    """
    return [1.0 if ANSWER_ONLY_RE.fullmatch(completion_text(c).strip()) else 0.0 for c in completions]
