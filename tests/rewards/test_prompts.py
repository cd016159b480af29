"""Prompt templates: Time-R1's exact text, query normalisation, the registry, and the chat messages."""

from __future__ import annotations

import pytest

from timegrpo.prompts import PromptTemplate, build_messages, get_template, register_template
from timegrpo.rewards import get_reward

TIME_R1_THINK = (
    'To accurately pinpoint the event "a person opens a door" in the video, determine the precise time period '
    "of the event.\n\nOutput your thought process within the <think> </think> tags, including analysis with "
    "either specific time ranges (xx.xx to xx.xx) in <timestep> </timestep> tags.\n\nThen, provide the start "
    'and end times (in seconds, precise to two decimal places) in the format "start time to end time" within '
    'the <answer> </answer> tags. For example: "12.54 to 17.83".'
)
TIME_R1_NO_THINK = (
    'To accurately pinpoint the event "a person opens a door" in the video, determine the precise time period '
    'of the event.\n\nProvide the start and end times (in seconds, precise to two decimal places) in the format '
    '"start time to end time" within the <answer> </answer> tags. For example: "12.54 to 17.83".'
)


def test_time_r1_templates_verbatim():
    assert get_template("think").render("  A person opens a door.") == TIME_R1_THINK
    assert get_template("no_think").render("A PERSON OPENS A DOOR") == TIME_R1_NO_THINK
    assert get_template("think").think and not get_template("no_think").think


def test_registry_errors():
    with pytest.raises(KeyError, match="unknown prompt template 'thinking'; known: .*no_think.*think"):
        get_template("thinking")
    with pytest.raises(ValueError, match="already registered"):
        register_template("think", "{query}")
    with pytest.raises(ValueError, match="no '\\{query\\}' placeholder"):
        register_template("_no_placeholder", "ground it")


def test_custom_template_and_messages():
    tpl = PromptTemplate("When does '{query}' happen in this {duration} s video?", system="Be brief.",
                         think=False, normalize=False)
    msgs = build_messages("The Dog Barks.", "/v/a.mp4", tpl, duration=31.0,
                          video_kwargs={"fps": 2.0, "total_pixels": 3584 * 28 * 28})
    assert msgs[0] == {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert msgs[1]["content"] == [
        {"type": "text", "text": "When does 'The Dog Barks.' happen in this 31.00 s video?"},
        {"type": "video", "video": "/v/a.mp4", "fps": 2.0, "total_pixels": 3584 * 28 * 28},
    ]


def test_answer_in_the_asked_format_scores_full_format_and_parses():
    # the example answer the think template gives, wrapped as the template asks
    completion = "<think>the door opens at <timestep>12.00 to 18.00</timestep></think><answer>12.54 to 17.83</answer>"
    assert get_reward("format")([completion]) == [1.0]
    assert get_reward("iou")([completion], windows=[[[12.54, 17.83]]]) == [1.0]
    assert get_reward("answer_format")(["<answer>12.54 to 17.83</answer>"]) == [1.0]
