"""Every answer parser: a model's completion -> the span(s), or the option letter, it answers.

Pure functions, doctested, shared by the rewards (:mod:`timegrpo.rewards`), the scoring of predictions
(:mod:`timegrpo.evaluate`) and anything else that reads a completion, so a training reward and an evaluation
number always read an answer the same way (STYLE rule 4). The span geometry (IoU, clipping, merging) is in
:mod:`timegrpo.spans`.

Span parsing (:func:`parse_answer`, SPEC section 1) has two modes:

* **strict** (``strict=True``) parses exactly as Time-R1 does (``parse_timestamp_output`` in
  ``xiaomi-research/time-r1`` ``main.py``, identical in ``www-Ye/Time-R1`` ``src/open_r1/grpo_video.py``):
  take all ``<answer>(.*?)</answer>`` blocks (dot matches newline) and keep the LAST; in it find all
  ``(\\d+\\.?\\d*) (to|and) (\\d+\\.?\\d*)`` (case-insensitive, exactly one space on each side) and keep the
  LAST; return the two floats as they are: no clamping, and ``start > end`` is returned unchanged.
* **tolerant** (the default) departs from that in these ways only, each shown in :func:`parse_answer`'s doctest:

  1. separators: ``to``/``and`` with any amount of whitespace (also none), and ``-``, ``–``, ``—``, ``~``;
  2. numbers: ``.5``, clock times ``m:ss``/``h:mm:ss`` (with optional decimals, ``1:05`` = 65 s) and an
     optional unit (``s``, ``sec``, ``secs``, ``second``, ``seconds``); a number glued to a letter or digit
     before it (``Qwen2.5``) is not read;
  3. a ``-`` right before the first number, not after a digit, is a minus sign (``-3 to 5`` is
     ``(-3, 5)``, clamped to ``(0, 5)``; Time-R1 would read ``3 to 5``);
  4. with a ``duration`` the span is clamped to ``[0, duration]``;
  5. ``start > end`` (as written, before clamping) is invalid: None;
  6. ``allow_bare=True`` reads the whole text when it has no ``<answer>`` block (off by default, as in Time-R1).

  Both modes take the LAST ``<answer>`` block and the LAST span in it, and fail (None) on a block with no span.

Time-R1's *evaluation* scripts (``extract_answer`` in ``xiaomi-research/time-r1`` ``evaluate.py``) read answers
differently from its training parser: :func:`parse_time_r1_eval` (``timegrpo score --protocol time_r1``).

The Boundary Reflection Agent reads every range of an answer, or ``none``, with :func:`parse_ranges`.
Grounded QA adds :func:`parse_glue` (VideoChat-R1's ``<glue>[(s, e), ...]</glue>`` spans) and
:func:`parse_letter` / :func:`answer_letter_of` (the option letter of a completion / of a ground truth).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from timegrpo.spans import Span, clip_span

#: Time-R1's answer block and span patterns (strict mode), verbatim.
STRICT_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
STRICT_SPAN_RE = re.compile(r"(\d+\.?\d*) (to|and) (\d+\.?\d*)", re.IGNORECASE)
#: Time-R1's evaluation pattern: the same, case-sensitive, searched in the whole output.
EVAL_SPAN_RE = re.compile(r"(\d+\.?\d*) (to|and) (\d+\.?\d*)")

_NUM = r"(?:\d+:){0,2}\d+(?:\.\d*)?|\.\d+"
_UNIT = r"(?:\s*(?:seconds?|secs?|s)\b)?"
_TOLERANT_SPAN_RE = re.compile(
    rf"(?<![\w.:])(?P<sign>(?<![\d.])-)?(?P<start>{_NUM}){_UNIT}"
    rf"\s*(?:to|and|-|–|—|~)\s*"
    rf"(?P<end>{_NUM}){_UNIT}(?![\d:])",
    re.IGNORECASE,
)


def last_answer_block(text: str) -> str | None:
    """The content of the LAST ``<answer>...</answer>`` block, or None when there is none.

    >>> last_answer_block("<answer>1 to 2</answer> then <answer>3 to 4</answer>")
    '3 to 4'
    >>> last_answer_block("no tags") is None
    True
    """
    blocks = STRICT_ANSWER_RE.findall(text)
    return blocks[-1] if blocks else None


def parse_time(token: str) -> float:
    """Seconds from ``12.5``, ``.5``, ``1:05`` (m:ss) or ``01:02:03.5`` (h:mm:ss).

    >>> parse_time("12.5"), parse_time("1:05"), parse_time("01:02:03.5"), parse_time(".5")
    (12.5, 65.0, 3723.5, 0.5)
    """
    total = 0.0
    for part in token.split(":"):
        total = total * 60.0 + float(part)
    return total


def _strict_span(text: str) -> Span | None:
    block = last_answer_block(text)
    if block is None:
        return None
    matches = STRICT_SPAN_RE.findall(block)
    if not matches:
        return None
    start, _, end = matches[-1]
    return float(start), float(end)


def parse_time_r1_eval(text: str) -> Span | None:
    """The span Time-R1's evaluation scripts read: the LAST ``number to|and number`` (lower case, one space each
    side) ANYWHERE in the output, not only in ``<answer>``; unclamped, ``start > end`` kept. (Their fallback to
    the ``<answer>`` block can never find what the whole-text search did not.)

    >>> parse_time_r1_eval("<think>from 1 to 2</think><answer>12.5 to 17.8</answer> or 20 and 30")
    (20.0, 30.0)
    >>> parse_time_r1_eval("<answer>12.5 TO 17.8</answer>"), parse_time_r1_eval("<answer>12.5s to 17.8s</answer>")
    (None, None)
    >>> parse_time_r1_eval("no answer tags: 30 to 10.")
    (30.0, 10.0)
    """
    matches = EVAL_SPAN_RE.findall(text)
    if not matches:
        return None
    start, _, end = matches[-1]
    return float(start), float(end)


def find_spans(text: str) -> list[Span]:
    """Every span written in ``text`` in the tolerant forms, in order, unclamped (see the module docstring).

    >>> find_spans("from 1:05 to 1:20, or 12.5-30s, or 3 and 4")
    [(65.0, 80.0), (12.5, 30.0), (3.0, 4.0)]
    """
    out = []
    for m in _TOLERANT_SPAN_RE.finditer(text):
        start = parse_time(m["start"])
        out.append((-start if m["sign"] else start, parse_time(m["end"])))
    return out


def parse_answer(
    text: str, duration: float | None = None, *, strict: bool = False, allow_bare: bool = False
) -> Span | None:
    """The span ``(start, end)`` in seconds that a completion answers, or None when there is none.

    The LAST ``<answer>`` block, the LAST span in it. ``strict=True`` parses exactly as Time-R1
    (``duration`` and ``allow_bare`` are then ignored); the tolerant default's departures are listed
    in the module docstring.

    >>> parse_answer("<think>maybe 1 to 2</think><answer>12.54 to 17.83</answer>")
    (12.54, 17.83)
    >>> parse_answer("<answer>1 to 2</answer><answer>3 and 4, no: 5 to 6</answer>")
    (5.0, 6.0)
    >>> parse_answer("<answer>12.5-30</answer>"), parse_answer("<answer>12.5-30</answer>", strict=True)
    ((12.5, 30.0), None)
    >>> parse_answer("<answer>12.5 - 30.0 s</answer>"), parse_answer("<answer>1:05 to 1:20</answer>")
    ((12.5, 30.0), (65.0, 80.0))
    >>> parse_answer("<answer>01:02:03 to 01:02:04</answer>")
    (3723.0, 3724.0)
    >>> parse_answer("<answer>-3 to 50</answer>", 30.0), parse_answer("<answer>-3 to 50</answer>", strict=True)
    ((0.0, 30.0), (3.0, 50.0))
    >>> parse_answer("<answer>20 to 10</answer>"), parse_answer("<answer>20 to 10</answer>", strict=True)
    (None, (20.0, 10.0))
    >>> parse_answer("<answer>50 to 40</answer>", 30.0)  # reversed, even though both clamp to 30

    >>> parse_answer("<answer>12.5  to 30</answer>"), parse_answer("<answer>12.5  to 30</answer>", strict=True)
    ((12.5, 30.0), None)
    >>> parse_answer("12 to 15"), parse_answer("12 to 15", allow_bare=True)
    (None, (12.0, 15.0))
    """
    if strict:
        return _strict_span(text)
    block = last_answer_block(text)
    if block is None:
        if not allow_bare:
            return None
        block = text
    spans = find_spans(block)
    if not spans:
        return None
    start, end = spans[-1]
    return None if start > end else clip_span((start, end), duration)


_NONE_RE = re.compile(r"^\W*(none|no|nowhere)\W*$", re.IGNORECASE)


def parse_ranges(text: str, duration: float | None = None) -> list[Span] | None:
    """Every time range of the LAST ``<answer>`` block (the Boundary Reflection Agent's answer): ``[]`` for
    ``none`` (also ``no``, ``nowhere``, any case and punctuation), the tolerant spans of :func:`find_spans`
    clamped into ``[0, duration]`` otherwise; None when there is no block, no range in it, or a reversed range.

    >>> parse_ranges("<answer>2 to 4.5, 10-12</answer>", 11.0), parse_ranges("<answer>None.</answer>")
    ([(2.0, 4.5), (10.0, 11.0)], [])
    >>> parse_ranges("<answer>later on</answer>"), parse_ranges("<answer>5 to 3</answer>"), parse_ranges("none")
    (None, None, None)
    """
    block = last_answer_block(text)
    if block is None:
        return None
    if _NONE_RE.match(block):
        return []
    spans = find_spans(block)
    if not spans or any(s > e for s, e in spans):
        return None
    return [clip_span(s, duration) for s in spans]


# --- glue spans (grounded QA) --------------------------------------------------------------------------

_GLUE_RE = re.compile(r"<glue>(.*?)</glue>", re.DOTALL)
_GLUE_NUM = r"\d+(?:\.\d+)?"
_GLUE_PAIR = rf"\({_GLUE_NUM},\s*{_GLUE_NUM}\)"
#: VideoChat-R1's accepted glue text (``is_valid_two_d_list_format``): ``[(s, e), ...]``, no space inside
#: the parentheses or after '[', optional trailing comma, ``[]`` allowed.
_STRICT_GLUE_RE = re.compile(rf"^\[({_GLUE_PAIR}(,\s*{_GLUE_PAIR})*(,)?|)\]$")
_LEADING_ZERO_INT = re.compile(r"0+[1-9]\d*")
_TOLERANT_PAIR_RE = re.compile(r"[\[(]\s*(-?\d*\.?\d+)\s*,\s*(-?\d*\.?\d+)\s*[\])]")


def parse_glue(text: str, duration: float | None = None, *, strict: bool = False) -> list[Span] | None:
    """The spans of a ``<glue>[(s, e), ...]</glue>`` block; None when absent or invalid.

    strict (VideoChat-R1): the FIRST ``<glue>`` block, exactly its grammar (``is_valid_two_d_list_format``:
    the regex, then ``ast.literal_eval``, so an integer such as ``01`` is invalid), every ``s <= e``.
    Tolerant: the LAST block, pairs written ``(s, e)`` or ``[s, e]`` with any spacing (or, when there are
    none, ``s to e`` spans), clamped into ``[0, duration]``; any ``s > e`` makes the whole answer invalid.

    >>> parse_glue("<glue>[(1.2, 5.8), (12.1, 17.1)]</glue>")
    [(1.2, 5.8), (12.1, 17.1)]
    >>> parse_glue("<glue>[[1.2, 5.8]]</glue>"), parse_glue("<glue>[[1.2, 5.8]]</glue>", strict=True)
    ([(1.2, 5.8)], None)
    >>> parse_glue("<glue>[(5, 1)]</glue>"), parse_glue("<glue>[]</glue>", strict=True)
    (None, [])
    """
    blocks = _GLUE_RE.findall(text)
    if not blocks:
        return None
    if strict:
        body = blocks[0]
        if not _STRICT_GLUE_RE.match(body):
            return None
        tokens = re.findall(rf"\(({_GLUE_NUM}),\s*({_GLUE_NUM})\)", body)
        if any(_LEADING_ZERO_INT.fullmatch(t) for pair in tokens for t in pair):
            return None  # VideoChat-R1 reads the list with ast.literal_eval, which rejects "01"
        spans = [(float(s), float(e)) for s, e in tokens]
        return None if any(s > e for s, e in spans) else spans
    body = blocks[-1]
    raw = [(float(s), float(e)) for s, e in _TOLERANT_PAIR_RE.findall(body)] or find_spans(body)
    spans = [clip_span(s, duration) for s in raw]
    return None if any(s > e for s, e in spans) else spans


# --- option letters (multiple choice) ------------------------------------------------------------------

_PAREN_RE = re.compile(r"\(([A-Z])\)")
_LEAD_RE = re.compile(r"^\s*([A-Z])(?:[.):,]|\s*$)")
_KEYWORD_RE = re.compile(r"(?i:option|answer|choice)\s*(?i:is)?\s*:?\s*([A-Z])\b")


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().rstrip(".").split())


def _option_letter(text: str, options: Sequence[str] | None) -> str | None:
    """The letter of the option whose text equals ``text`` (case, spacing and a final period ignored)."""
    norm = _norm(text)
    for k, opt in enumerate(options or ()):
        if _norm(str(opt)) == norm:
            return string.ascii_uppercase[k]
    return None


def parse_letter(text: str, options: Sequence[str] | None = None, *, allow_bare: bool = False) -> str | None:
    """The option letter a completion answers, or None.

    Read from the LAST ``<answer>`` block (the whole text with ``allow_bare`` when there is none), the first
    rule that matches wins: the last ``(X)`` (Time-R1's MCQ parsing); the block equal to one option's text; a
    letter opening the block and followed by punctuation or nothing (``B``, ``B.``, ``B) ...``; not ``A dog``);
    ``option/answer/choice [is] X``.

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
    letter = _option_letter(block, options)
    if letter is not None:
        return letter
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
    letter = _option_letter(text, options)
    if letter is not None:
        return letter
    m = re.fullmatch(r"\(?([A-Za-z])\)?\.?", text)
    if m:
        return m.group(1).upper()
    raise ValueError(f"answer {answer!r} is neither a letter, an option index, nor one of the options {options}")
