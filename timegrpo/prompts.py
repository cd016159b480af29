"""The prompt stage: templates, the Qwen-style chat messages they become, their tokenisation with the videos,
and the assistant text SFT teaches.

Everything that turns a :class:`timegrpo.data.schema.Sample` into model inputs lives here, so training, SFT,
evaluation and the benchmark feed the model the same text and the same frames: :func:`prompt_inputs` (samples
+ a :data:`timegrpo.data.source.VideoSource` -> processor outputs) and :func:`sft_target`.

A template turns a query into the user's text. ``think`` is Time-R1's grounding prompt (``QUESTION_TEMPLATE_TG_v1``
in ``xiaomi-research/time-r1`` ``src/time_r1/rl/timer1_trainer.py``, the ``"r1"`` entry of ``DEFAULT_TG_PROMPT``
in ``src/vllm_inference/data/config.py``); ``no_think`` is the same repo's answer-only ``"default"`` prompt.
As in Time-R1's data loading, the query is stripped, lowercased and one trailing ``.`` dropped
(:func:`normalize_query`; a template can turn that off with ``normalize=False``).

Add your own with :func:`register_template` (the text holds ``{query}``; ``{duration}`` is also filled, with
two decimals, for templates that state the length). :func:`build_messages` makes the chat messages with a
video entry ``{"type": "video", "video": path, **video_kwargs}``: the video layer decides the kwargs
(``fps``, ``total_pixels``, ``min_pixels``, ``video_start``/``video_end``...), so they are a parameter here.

>>> msgs = build_messages("A person opens the door.", video="v.mp4", template="think", video_kwargs={"fps": 2.0})
>>> msgs[0]["role"], [c["type"] for c in msgs[0]["content"]]
('user', ['text', 'video'])
>>> msgs[0]["content"][1]
{'type': 'video', 'video': 'v.mp4', 'fps': 2.0}
>>> msgs[0]["content"][0]["text"].splitlines()[0]
'To accurately pinpoint the event "a person opens the door" in the video, determine the precise time period of the event.'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from timegrpo.registry import Registry

if TYPE_CHECKING:
    import torch

    from timegrpo.data.schema import Sample
    from timegrpo.data.source import VideoSource

Message = dict[str, Any]


@dataclass(frozen=True)
class PromptTemplate:
    """A user prompt with ``{query}`` (and optionally ``{duration}``) placeholders.

    Attributes:
        text: the user text; ``{query}`` is replaced by the (normalised) query.
        system: an optional system message (None: no system turn).
        think: whether the template asks for ``<think>`` (the trainer pairs it with the ``format`` reward;
            no-think templates pair with ``answer_format``).
        normalize: lowercase the query and drop one trailing '.' (Time-R1's preprocessing).
    """

    text: str
    system: str | None = None
    think: bool = True
    normalize: bool = True

    def render(self, query: str, duration: float | None = None) -> str:
        """The user text for ``query`` (``{duration}`` becomes ``'unknown'`` when None)."""
        q = normalize_query(query) if self.normalize else query
        dur = "unknown" if duration is None else f"{float(duration):.2f}"
        return self.text.replace("{query}", q).replace("{duration}", dur)


TEMPLATES: Registry[PromptTemplate] = Registry("prompt template")

_TIME_R1_HEAD = (
    'To accurately pinpoint the event "{query}" in the video, determine the precise time period of the event.\n\n'
)
_TIME_R1_TAIL = (
    "provide the start and end times (in seconds, precise to two decimal places) in the format "
    '"start time to end time" within the <answer> </answer> tags. For example: "12.54 to 17.83".'
)

TEMPLATES.register(
    "think",
    PromptTemplate(
        _TIME_R1_HEAD
        + "Output your thought process within the <think> </think> tags, including analysis with either specific "
        "time ranges (xx.xx to xx.xx) in <timestep> </timestep> tags.\n\nThen, "
        + _TIME_R1_TAIL,
        think=True,
    ),
)
TEMPLATES.register("no_think", PromptTemplate(_TIME_R1_HEAD + "P" + _TIME_R1_TAIL[1:], think=False))
#: Terse think prompt for tiny models (the CPU demo and tests): same answer format, ~10x fewer prompt tokens.
TEMPLATES.register(
    "short_think",
    PromptTemplate('When does "{query}" happen? Think in <think> </think>, then answer "start to end" in seconds '
                   "in <answer> </answer>.", think=True),
)

#: The Boundary Reflection Agent's question (VideoTG-R1, SPEC section 2; the wording is ours): the video it is
#: asked about has the annotated window's frames blacked out (:mod:`timegrpo.curriculum.reflection`); the answer
#: is read by :func:`timegrpo.parsing.parse_ranges`.
TEMPLATES.register(
    "boundary_reflection",
    PromptTemplate('In this {duration}-second video, the frames where "{query}" was annotated have been replaced by '
                   'black frames. Does "{query}" also happen at another time in the video? Give every other time '
                   'range as "start to end" in seconds, separated by commas, within <answer> </answer>, or answer '
                   "<answer>none</answer> if it happens nowhere else.", think=False),
)


def register_template(name: str, template: PromptTemplate | str, **fields: Any) -> PromptTemplate:
    """Register a template under ``name`` (a taken name is an error). A str becomes ``PromptTemplate(text, **fields)``.

    >>> t = register_template("_doctest_short", "Find: {query} (video of {duration} s)", think=False)
    >>> t.render("The Cat.", 12.5)
    'Find: the cat (video of 12.50 s)'
    """
    tpl = PromptTemplate(template, **fields) if isinstance(template, str) else template
    if "{query}" not in tpl.text:
        raise ValueError(f"prompt template {name!r} has no '{{query}}' placeholder; add one")
    TEMPLATES.register(name, tpl)
    return tpl


def get_template(template: str | PromptTemplate) -> PromptTemplate:
    """A template by name (unknown names list the known ones) or the template itself."""
    return template if isinstance(template, PromptTemplate) else TEMPLATES.get(template)


def normalize_query(query: str) -> str:
    """Time-R1's query preprocessing: strip, lowercase, drop ONE trailing '.'.

    >>> normalize_query("  A person opens the door..  ")
    'a person opens the door.'
    """
    q = query.strip().lower()
    return q[:-1] if q.endswith(".") else q


def build_messages(
    query: str,
    video: str | None,
    template: str | PromptTemplate = "think",
    *,
    duration: float | None = None,
    video_kwargs: Mapping[str, Any] | None = None,
    video_first: bool = False,
) -> list[Message]:
    """Chat messages (Qwen/TRL format) asking to ground ``query`` in ``video``.

    Returns ``[{"role": "system", ...}?, {"role": "user", "content": [text, video]}]``; the video entry is
    ``{"type": "video", "video": video, **video_kwargs}`` and is left out when ``video`` is None (text-only
    tests). Time-R1 puts the text before the video; ``video_first=True`` swaps them (Qwen's own examples).

    >>> m = build_messages("q", None, "no_think")
    >>> len(m), [c["type"] for c in m[0]["content"]]
    (1, ['text'])
    >>> t = PromptTemplate("{query}?", system="You are a video analysis expert.")
    >>> [x["role"] for x in build_messages("Q", "v.mp4", t, video_first=True)]
    ['system', 'user']
    >>> build_messages("Q", "v.mp4", t, video_first=True)[1]["content"][0]["type"]
    'video'
    """
    tpl = get_template(template)
    content: list[dict[str, Any]] = [{"type": "text", "text": tpl.render(query, duration)}]
    if video is not None:
        entry = {"type": "video", "video": video, **dict(video_kwargs or {})}
        content = [entry, *content] if video_first else [*content, entry]
    messages: list[Message] = []
    if tpl.system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": tpl.system}]})
    messages.append({"role": "user", "content": content})
    return messages


def sample_messages(
    sample: Any,
    template: str | PromptTemplate = "think",
    *,
    video_kwargs: Mapping[str, Any] | None = None,
    video_first: bool = False,
) -> list[Message]:
    """:func:`build_messages` for a :class:`timegrpo.data.schema.Sample` (its ``query``, ``video``, ``duration``).

    The clip bounds ``video_start``/``video_end`` of the sample are added to the video entry when set and not
    already given in ``video_kwargs``.

    >>> from timegrpo.data.schema import Sample
    >>> s = Sample("1", "v", "v.mp4", 30.0, "Jump.", [(1.0, 2.0)], video_start=5.0, video_end=35.0)
    >>> sample_messages(s, "no_think")[0]["content"][1]
    {'type': 'video', 'video': 'v.mp4', 'video_start': 5.0, 'video_end': 35.0}
    """
    kwargs = dict(video_kwargs or {})
    for key in ("video_start", "video_end"):
        value = getattr(sample, key, None)
        if value is not None:
            kwargs.setdefault(key, value)
    return build_messages(
        sample.query, sample.video, template, duration=sample.duration, video_kwargs=kwargs,
        video_first=video_first,
    )


# ------------------------------------------------------------------------------------------------ tokenising
def prepare_prompts(processor: Any, messages: Sequence[list[dict[str, Any]]], videos: Sequence[torch.Tensor],
                    video_metadata: Sequence[Any]) -> dict[str, Any]:
    """Tokenise P chat prompts with their videos: ``input_ids`` (P, Lp, left padded), ``attention_mask``,
    ``mm_token_type_ids``, ``pixel_values_videos``, ``video_grid_thw`` (P, 3) and, for Qwen2.5-VL,
    ``second_per_grid_ts`` (P,), computed by the processor from each video's sampled fps.

    ``videos`` are the already-sampled frames ``(T, C, H, W)``; ``video_metadata`` carries their fps and frame
    indices (``transformers.video_utils.VideoMetadata``), so the processor does not sample again.
    """
    processor.tokenizer.padding_side = "left"
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in messages]
    return dict(processor(text=texts, videos=list(videos), video_metadata=list(video_metadata),
                          do_sample_frames=False, padding=True, return_tensors="pt"))


def prompt_inputs(processor: Any, samples: Sequence[Sample], videos: VideoSource, template: str | PromptTemplate,
                  *, video_first: bool = False) -> dict[str, Any]:
    """Processor outputs (P rows) for ``samples`` under ``template``, frames from ``videos``; see
    :func:`prepare_prompts`."""
    frames, metas = zip(*(videos(s) for s in samples), strict=True)
    messages = [sample_messages(s, template, video_first=video_first) for s in samples]
    return prepare_prompts(processor, messages, frames, metas)


# --------------------------------------------------------------------------------------------- SFT targets
#: The SFT target of a think template: a short rationale and the answer (two decimals, Time-R1's format).
THINK_TARGET = "<think>The event happens from {start:.2f} to {end:.2f} seconds.</think><answer>{start:.2f} to {end:.2f}</answer>"
#: The SFT target of a no-think template: the answer only.
NO_THINK_TARGET = "<answer>{start:.2f} to {end:.2f}</answer>"
#: A fixed one-phrase rationale and the answer, which a tiny model learns in seconds (``timegrpo demo`` passes it
#: as ``target``); it states no time, so the answer is the only thing learnt about the event.
FIXED_RATIONALE_TARGET = "<think>the event is visible</think><answer>{start:.2f} to {end:.2f}</answer>"


#: ``meta`` key of a sample's own SFT target text (a task whose answer is not the sample's window, such as the
#: Boundary Reflection Agent's ``none`` or other ranges): it wins over the template's and ``target``.
OWN_TARGET_KEY = "sft_target"


def sft_target(sample: Sample, template: str | PromptTemplate, target: str | None = None) -> str:
    """The assistant text SFT teaches for ``sample``: its first ground-truth window written in ``target``
    (``{start}``, ``{end}``, ``{query}`` placeholders), by default :data:`THINK_TARGET` for a think template
    and :data:`NO_THINK_TARGET` otherwise; or, when ``sample.meta`` has one, its own text
    (:data:`OWN_TARGET_KEY`).

    >>> from timegrpo.data.schema import Sample
    >>> s = Sample("1", "v", None, 20.0, "q", [(1.0, 4.5)])
    >>> sft_target(s, "no_think")
    '<answer>1.00 to 4.50</answer>'
    >>> sft_target(s, "short_think", FIXED_RATIONALE_TARGET)
    '<think>the event is visible</think><answer>1.00 to 4.50</answer>'
    >>> sft_target(Sample("2", "v", None, 20.0, "q", [(1.0, 4.5)], meta={"sft_target": "<answer>none</answer>"}),
    ...            "no_think")
    '<answer>none</answer>'
    """
    own = sample.meta.get(OWN_TARGET_KEY)
    if own is not None:
        return str(own)
    if not sample.windows:
        raise ValueError(f"sample {sample.qid!r} has no ground-truth window: SFT needs one")
    fmt = target or (THINK_TARGET if get_template(template).think else NO_THINK_TARGET)
    start, end = sample.windows[0]
    return fmt.format(start=start, end=end, query=sample.query)
