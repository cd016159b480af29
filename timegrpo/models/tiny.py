"""Tiny Qwen2-VL, Qwen2.5-VL and Qwen3-VL models built offline, for tests, benchmarks and the CPU demo.

Everything is made on the spot, with no Hub access: a byte-level BPE tokenizer trained on a small corpus
(numbers 0.0-100.0, the registered prompt templates, any extra text you pass) carrying the Qwen special
tokens and a Qwen-style chat template; the real processor classes of each family (image + video processor);
and a randomly initialised model of the real architecture, only much smaller. The token ids written in the
model config (bos/eos/pad, image/video/vision-start/end) are read from the tokenizer, so they always agree.

Example (builds a Qwen2.5-VL-shaped model of ~1.5M parameters, saves it, loads it back)::

    >>> from timegrpo.models.tiny import build_tiny_vlm, save_tiny_vlm
    >>> model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)     # doctest: +SKIP
    >>> path = save_tiny_vlm("qwen2_5_vl", "/tmp/tiny-qwen2.5-vl")  # doctest: +SKIP
    >>> from transformers import AutoModelForImageTextToText, AutoProcessor
    >>> model = AutoModelForImageTextToText.from_pretrained(path)   # doctest: +SKIP
    >>> processor = AutoProcessor.from_pretrained(path)             # doctest: +SKIP

or from the shell: ``timegrpo tiny --family qwen2_5_vl --out /tmp/tiny``.

Sizes (defaults of :class:`TinySpec`): text hidden 128 x 4 layers, vision depth 2 x hidden 64, so a
forward + generate on a 16-frame 56x56 video takes well under a second on one CPU core. ``tokens_per_second``
is set explicitly (2, as in the released Qwen2.5-VL configs) so the temporal position step of a video is
``tokens_per_second * temporal_patch_size / fps``: 4 at 1 fps, 2 at 2 fps, 1 at 4 fps.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from timegrpo.registry import Registry

#: Qwen special tokens, in the order the released Qwen2-VL tokenizers list them.
SPECIAL_TOKENS: list[str] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
#: Reasoning/answer tags: ordinary (non-special) added tokens, so decoding with
#: ``skip_special_tokens=True`` keeps them, as the rewards need.
TAG_TOKENS: list[str] = ["<think>", "</think>", "<answer>", "</answer>", "<timestep>", "</timestep>"]

#: A Qwen-style chat template (the Qwen2-VL layout: a default system turn, vision placeholders in user
#: turns, ``<|im_start|>assistant\n`` as the generation prompt).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Words the grounding prompts, the synthetic benchmark and typical queries use; the BPE learns them whole.
BASE_CORPUS: list[str] = [
    "You are a helpful assistant.",
    "To accurately pinpoint the event in the video, determine the precise time period of the event.",
    "Output your thought process within the <think> </think> tags, including analysis with either specific "
    "time ranges (xx.xx to xx.xx) in <timestep> </timestep> tags.",
    "Then, provide the start and end times (in seconds, precise to two decimal places) in the format "
    '"start time to end time" within the <answer> </answer> tags. For example: "12.54 to 17.83".',
    "The video lasts seconds. When does the event happen? Give the start and end time in seconds.",
    "a person sits down in a chair. a red square appears. the blue circle moves to the right. "
    "the green triangle changes colour to yellow. the object is visible. a shape shows up on screen.",
    "white black red green blue yellow orange purple pink cyan magenta square circle triangle shape object",
    "appears disappears moves left right up down changes turns becomes colour color when from to and",
]


def number_corpus(max_value: float = 100.0, step: float = 0.1) -> list[str]:
    """Every number ``0.0, 0.1, ..., max_value`` as text, with one and two decimals.

    >>> number_corpus(0.2)[:4]
    ['0.0 to 0.00', '0.1 to 0.10', '0.2 to 0.20']
    """
    n = round(max_value / step)
    return [f"{i * step:.1f} to {i * step:.2f}" for i in range(n + 1)]


def build_tiny_tokenizer(vocab_size: int = 1024, corpus: Iterable[str] = ()) -> Any:
    """Train a byte-level BPE tokenizer with the Qwen special tokens and chat template.

    Returns a ``transformers.PreTrainedTokenizerFast`` whose ``pad``/``bos`` token is ``<|endoftext|>`` and whose
    ``eos`` token is ``<|im_end|>`` (as in the released Qwen2-VL-Instruct tokenizers). ``vocab_size`` counts the
    256 byte symbols, the merges and the added tokens. Training is deterministic for a given corpus.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    from timegrpo.prompts import TEMPLATES

    prompts = [TEMPLATES.get(name).render("{query}") for name in TEMPLATES.names()]
    texts = [*BASE_CORPUS, *prompts, *number_corpus(), *corpus]
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    fast.add_tokens(TAG_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


@dataclass
class TinySpec:
    """Sizes of a tiny model; the defaults give ~1.5M parameters."""

    hidden_size: int = field(default=128, metadata={"help": "text hidden size"})
    num_hidden_layers: int = field(default=4, metadata={"help": "text decoder layers"})
    num_attention_heads: int = field(default=4, metadata={"help": "text attention heads (head_dim = hidden/heads)"})
    num_key_value_heads: int = field(default=2, metadata={"help": "text KV heads (GQA)"})
    intermediate_size: int = field(default=256, metadata={"help": "text MLP width"})
    vision_depth: int = field(default=2, metadata={"help": "vision transformer blocks"})
    vision_hidden_size: int = field(default=64, metadata={"help": "vision transformer width"})
    vision_num_heads: int = field(default=2, metadata={"help": "vision attention heads"})
    vision_intermediate_size: int = field(default=128, metadata={"help": "vision MLP width"})
    tokens_per_second: int = field(default=2, metadata={"help": "Qwen2.5-VL temporal position ids per second"})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary size including special tokens"})
    max_position_embeddings: int = field(default=8192, metadata={"help": "text context length"})
    min_pixels: int = field(default=4 * 28 * 28, metadata={"help": "processor minimum pixels per frame"})
    max_pixels: int = field(default=64 * 28 * 28, metadata={"help": "processor maximum pixels per frame"})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def mrope_section(self) -> list[int]:
        """Split ``head_dim / 2`` rotary frequencies over (time, height, width) as Qwen does (1/4, 3/8, 3/8)."""
        half = self.head_dim // 2
        t = half // 4
        h = (half - t) // 2
        return [t, h, half - t - h]


#: Builders of the config dict for each family: ``(spec, token_ids) -> config kwargs``.
FAMILIES: Registry[Callable[[TinySpec, dict[str, int]], Any]] = Registry("tiny VLM family")


def _text_config(spec: TinySpec, ids: dict[str, int], vocab: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab,
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_key_value_heads": spec.num_key_value_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": spec.mrope_section()},
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
    }


def _token_ids(ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": ids["image"],
        "video_token_id": ids["video"],
        "vision_start_token_id": ids["vision_start"],
        "vision_end_token_id": ids["vision_end"],
    }


def _vision_config(spec: TinySpec) -> dict[str, Any]:
    """Vision-tower sizes shared by the Qwen2.5-VL and Qwen3-VL vision configs."""
    return {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_num_heads,
        "out_hidden_size": spec.hidden_size,
    }


@FAMILIES.register("qwen2_vl")
def _qwen2_vl(spec: TinySpec, ids: dict[str, int], vocab: int) -> Any:
    from transformers import Qwen2VLConfig

    vision = {
        "depth": spec.vision_depth,
        "embed_dim": spec.vision_hidden_size,
        "hidden_size": spec.hidden_size,
        "num_heads": spec.vision_num_heads,
        "mlp_ratio": spec.vision_intermediate_size // spec.vision_hidden_size,
    }
    return Qwen2VLConfig(text_config=_text_config(spec, ids, vocab), vision_config=vision, **_token_ids(ids))


@FAMILIES.register("qwen2_5_vl")
def _qwen2_5_vl(spec: TinySpec, ids: dict[str, int], vocab: int) -> Any:
    from transformers import Qwen2_5_VLConfig

    vision = {
        **_vision_config(spec),
        "tokens_per_second": spec.tokens_per_second,
        "window_size": 112,
        "fullatt_block_indexes": [spec.vision_depth - 1],
    }
    return Qwen2_5_VLConfig(text_config=_text_config(spec, ids, vocab), vision_config=vision, **_token_ids(ids))


@FAMILIES.register("qwen3_vl")
def _qwen3_vl(spec: TinySpec, ids: dict[str, int], vocab: int) -> Any:
    from transformers import Qwen3VLConfig

    text = _text_config(spec, ids, vocab)
    text["head_dim"] = spec.head_dim
    text["rope_parameters"]["mrope_interleaved"] = True
    text.pop("bos_token_id")
    text.pop("eos_token_id")
    vision = {
        **_vision_config(spec),
        "num_position_embeddings": 256,
        "deepstack_visual_indexes": [0],
    }
    return Qwen3VLConfig(text_config=text, vision_config=vision, **_token_ids(ids))


def _special_ids(tokenizer: Any) -> dict[str, int]:
    get = tokenizer.convert_tokens_to_ids
    return {
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
        "endoftext": get("<|endoftext|>"),
        "image": get("<|image_pad|>"),
        "video": get("<|video_pad|>"),
        "vision_start": get("<|vision_start|>"),
        "vision_end": get("<|vision_end|>"),
    }


def build_tiny_processor(family: str, tokenizer: Any, spec: TinySpec) -> Any:
    """The real processor class of ``family`` (image + video processor) around ``tokenizer``."""
    from transformers import Qwen2VLImageProcessor

    pixels = {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    if family == "qwen3_vl":
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

        image = Qwen2VLImageProcessor(patch_size=16, size=pixels, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        video = Qwen3VLVideoProcessor(size=pixels, do_sample_frames=False, cap_pixels_per_frame=True)
        return Qwen3VLProcessor(image_processor=image, video_processor=video, tokenizer=tokenizer,
                                chat_template=CHAT_TEMPLATE)
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image = Qwen2VLImageProcessor(size=pixels)
    video = Qwen2VLVideoProcessor(size=pixels, cap_pixels_per_frame=True)
    cls = Qwen2_5_VLProcessor if family == "qwen2_5_vl" else Qwen2VLProcessor
    return cls(image_processor=image, video_processor=video, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_tiny_vlm(
    family: str = "qwen2_5_vl",
    *,
    spec: TinySpec | None = None,
    corpus: Iterable[str] = (),
    seed: int = 0,
    **overrides: Any,
) -> tuple[Any, Any]:
    """Build ``(model, processor)`` of a tiny ``family`` model (``qwen2_vl`` | ``qwen2_5_vl`` | ``qwen3_vl``).

    ``spec`` (or keyword ``overrides`` of its fields) sets the sizes; ``corpus`` adds text the tokenizer
    should learn whole (e.g. a dataset's queries); ``seed`` fixes the random weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    spec = replace(spec or TinySpec(), **overrides)
    builder = FAMILIES.get(family)
    tokenizer = build_tiny_tokenizer(spec.vocab_size, corpus)
    ids = _special_ids(tokenizer)
    vocab = len(tokenizer)
    config = builder(spec, ids, vocab)
    torch.manual_seed(seed)
    random.seed(seed)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos"],
        eos_token_id=[ids["eos"], ids["endoftext"]],
        pad_token_id=ids["pad"],
        do_sample=False,
    )
    processor = build_tiny_processor(family, tokenizer, spec)
    return model, processor


def save_tiny_vlm(family: str, out_dir: str | Path, *, seed: int = 0, **kwargs: Any) -> Path:
    """Build a tiny model and ``save_pretrained`` it (with its processor) to ``out_dir``; returns the path.

    The folder loads back with ``AutoModelForImageTextToText.from_pretrained`` and ``AutoProcessor.from_pretrained``.
    """
    out = Path(out_dir)
    model, processor = build_tiny_vlm(family, seed=seed, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
