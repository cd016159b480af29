"""Answer parsing (strict = Time-R1, tolerant = ours): spans, glue spans and option letters, in tables."""

from __future__ import annotations

import pytest

from timegrpo.parsing import answer_letter_of, find_spans, parse_answer, parse_glue, parse_letter

# (completion, duration, tolerant result, strict (Time-R1) result)
PARSE_TABLE = [
    ("<answer>12.54 to 17.83</answer>", None, (12.54, 17.83), (12.54, 17.83)),
    ("<think>1 to 2</think><answer>3 to 4</answer>", None, (3.0, 4.0), (3.0, 4.0)),
    ("<answer>1 to 2</answer><answer>5 to 6</answer>", None, (5.0, 6.0), (5.0, 6.0)),  # last block
    ("<answer>1 to 2</answer><answer>none</answer>", None, None, None),  # last block has no span
    ("<answer>1 to 2, maybe 7 to 9</answer>", None, (7.0, 9.0), (7.0, 9.0)),  # last span in the block
    ("<answer>between 3.5 and 8</answer>", None, (3.5, 8.0), (3.5, 8.0)),
    ("<answer>3 TO 8</answer>", None, (3.0, 8.0), (3.0, 8.0)),  # case-insensitive in both
    ("<answer>\n3 to 8\n</answer>", None, (3.0, 8.0), (3.0, 8.0)),  # dot matches newline
    ("<answer>12.5-30</answer>", None, (12.5, 30.0), None),
    ("<answer>12.5 - 30.0</answer>", None, (12.5, 30.0), None),
    ("<answer>12.5 – 30</answer>", None, (12.5, 30.0), None),
    ("<answer>12.5  to  30</answer>", None, (12.5, 30.0), None),  # Time-R1 wants exactly one space
    ("<answer>12.5s to 30s</answer>", None, (12.5, 30.0), None),
    ("<answer>12.5 seconds to 30 seconds</answer>", None, (12.5, 30.0), None),
    ("<answer>1:05 to 1:20</answer>", None, (65.0, 80.0), (5.0, 1.0)),  # Time-R1 reads "05 to 1"
    ("<answer>01:02:03 to 01:02:04.5</answer>", None, (3723.0, 3724.5), (3.0, 1.0)),  # ... and "03 to 01"
    ("<answer>.5 to 3</answer>", None, (0.5, 3.0), (5.0, 3.0)),  # Time-R1 cannot read ".5"
    ("<answer>12. to 17.</answer>", None, (12.0, 17.0), (12.0, 17.0)),
    ("<answer>-3 to 8</answer>", 30.0, (0.0, 8.0), (3.0, 8.0)),  # minus sign, clamped to 0
    ("<answer>5 to 45</answer>", 30.0, (5.0, 30.0), (5.0, 45.0)),  # clamped to the duration
    ("<answer>40 to 45</answer>", 30.0, (30.0, 30.0), (40.0, 45.0)),
    ("<answer>20 to 10</answer>", None, None, (20.0, 10.0)),  # start > end: invalid when tolerant
    ("<answer>50 to 40</answer>", 30.0, None, (50.0, 40.0)),  # reversed as written, though both clamp to 30
    ("<answer>Qwen2.5 to 7</answer>", None, None, (2.5, 7.0)),  # a number glued to a word is not read
    ("12 to 15", None, None, None),  # no answer block
    ("<answer>12 to 15", None, None, None),  # unclosed block
    ("", None, None, None),
]


@pytest.mark.parametrize("text,duration,tolerant,strict", PARSE_TABLE)
def test_parse_table(text, duration, tolerant, strict):
    assert parse_answer(text, duration) == tolerant
    assert parse_answer(text, duration, strict=True) == strict


def test_allow_bare_reads_text_without_answer_block():
    assert parse_answer("the event is 3 to 4, no, 5 to 6", allow_bare=True) == (5.0, 6.0)
    assert parse_answer("<answer>1 to 2</answer> 5 to 6", allow_bare=True) == (1.0, 2.0)


def test_find_spans_in_order_unclamped():
    assert find_spans("1:05 to 1:20, -3 to 4, Qwen2.5 to 7, 8~9 s") == [(65.0, 80.0), (-3.0, 4.0), (8.0, 9.0)]
    assert find_spans("no span here, 3 apples") == []


# (completion, duration, tolerant, strict (VideoChat-R1))
GLUE_TABLE = [
    ("<glue>[(1.2, 5.8), (12.1, 17.1)]</glue>", None, [(1.2, 5.8), (12.1, 17.1)], [(1.2, 5.8), (12.1, 17.1)]),
    ("<glue>[[1, 5]]</glue>", None, [(1.0, 5.0)], None),  # lists: outside VideoChat-R1's grammar
    ("<glue>[(0, 40)]</glue>", 30.0, [(0.0, 30.0)], [(0.0, 40.0)]),  # clamped only when tolerant
    ("<glue>[(1, 2)]</glue><glue>[(3, 4)]</glue>", None, [(3.0, 4.0)], [(1.0, 2.0)]),  # last vs first block
    ("<glue>3 to 4</glue>", None, [(3.0, 4.0)], None),  # tolerant falls back to "s to e" spans
    ("<glue>[(01, 2)]</glue>", None, [(1.0, 2.0)], None),  # "01" is no Python int literal
    ("<glue>[(5, 1)]</glue>", None, None, None),  # start > end
    ("<glue>[]</glue>", None, [], []),
    ("<answer>1 to 2</answer>", None, None, None),  # no glue block
]


@pytest.mark.parametrize("text,duration,tolerant,strict", GLUE_TABLE)
def test_parse_glue_table(text, duration, tolerant, strict):
    assert parse_glue(text, duration) == tolerant
    assert parse_glue(text, duration, strict=True) == strict


# (completion, options, letter)
LETTER_TABLE = [
    ("<answer>(B) a dog</answer>", None, "B"),
    ("<answer>(A) or rather (C)</answer>", None, "C"),  # the last (X)
    ("<answer>C. red</answer>", None, "C"),
    ("<answer>D</answer>", None, "D"),
    ("<answer>The answer is E</answer>", None, "E"),
    ("<answer>option: b</answer>", None, None),  # lower-case letters are not read
    ("<answer>A dog</answer>", None, None),  # "A" opening a sentence is not a letter
    ("<answer>A dog.</answer>", ["a cat", "a dog"], "B"),  # an option's text, case and final period ignored
    ("(B) outside the block", None, None),
    ("<answer>(A)</answer><answer>B</answer>", None, "B"),  # the last block
]


@pytest.mark.parametrize("text,options,letter", LETTER_TABLE)
def test_parse_letter_table(text, options, letter):
    assert parse_letter(text, options) == letter


def test_answer_letter_of_forms_and_errors():
    assert [answer_letter_of(a) for a in ("b", "(C)", "D.", 0, 4)] == ["B", "C", "D", "A", "E"]
    assert answer_letter_of("a dog", ["a cat", "A Dog."]) == "B" and answer_letter_of(None) is None
    with pytest.raises(ValueError, match="neither a letter, an option index, nor one of the options"):
        answer_letter_of("a horse", ["a cat", "a dog"])
