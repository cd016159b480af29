"""A tiny CLIP built offline, for the tests of ``timegrpo detr features`` (as :mod:`timegrpo.models.tiny` builds
tiny Qwen-VL models): the real ``CLIPModel`` architecture with random weights, the real ``CLIPImageProcessor``,
and a byte-level BPE tokenizer trained on the spot (lower-cased, each text wrapped in ``<|startoftext|>`` ...
``<|endoftext|>`` as CLIP's tokenizer does, padded on the right with ``<|endoftext|>``, at most 77 tokens).

The folder :func:`save_tiny_clip` writes loads back with ``CLIPModel.from_pretrained``,
``AutoTokenizer.from_pretrained`` and ``AutoImageProcessor.from_pretrained``, like ``openai/clip-vit-base-patch32``::

    >>> from timegrpo.models.tiny_clip import save_tiny_clip
    >>> path = save_tiny_clip("/tmp/tiny-clip")          # doctest: +SKIP

Sizes (:class:`TinyClipSpec`): text and vision width 32 x 2 layers, 32x32 images in 8x8 patches, projection 16.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: CLIP's context length.
MAX_TEXT_TOKENS = 77


@dataclass
class TinyClipSpec:
    """Sizes of a tiny CLIP; the defaults give ~60K parameters."""

    hidden_size: int = field(default=32, metadata={"help": "text and vision transformer width"})
    num_layers: int = field(default=2, metadata={"help": "text and vision transformer layers"})
    num_heads: int = field(default=2, metadata={"help": "attention heads"})
    intermediate_size: int = field(default=64, metadata={"help": "MLP width"})
    projection_dim: int = field(default=16, metadata={"help": "joint embedding size (the feature dimension)"})
    image_size: int = field(default=32, metadata={"help": "input image side (pixels)"})
    patch_size: int = field(default=8, metadata={"help": "vision patch side (pixels)"})
    vocab_size: int = field(default=512, metadata={"help": "BPE vocabulary size including special tokens"})


def build_tiny_clip_tokenizer(vocab_size: int = 512, corpus: Iterable[str] = ()) -> Any:
    """A ``PreTrainedTokenizerFast`` trained on the tiny-model corpus plus ``corpus``: lower-cased byte-level BPE
    with CLIP's start/end tokens, right padding with the end token, ``model_max_length`` 77."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from timegrpo.models.tiny import BASE_CORPUS

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([*BASE_CORPUS, *corpus], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, tok.token_to_id(BOS)), (EOS, tok.token_to_id(EOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=None,
                                   padding_side="right", model_max_length=MAX_TEXT_TOKENS,
                                   clean_up_tokenization_spaces=False)


def build_tiny_clip(spec: TinyClipSpec | None = None, *, corpus: Iterable[str] = (), seed: int = 0,
                    **overrides: Any) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, image_processor)`` of a tiny CLIP; ``seed`` fixes the random weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    spec = replace(spec or TinyClipSpec(), **overrides)
    tokenizer = build_tiny_clip_tokenizer(spec.vocab_size, corpus)
    common = {"hidden_size": spec.hidden_size, "num_hidden_layers": spec.num_layers,
              "num_attention_heads": spec.num_heads, "intermediate_size": spec.intermediate_size}
    text = {**common, "vocab_size": len(tokenizer), "max_position_embeddings": MAX_TEXT_TOKENS,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    vision = {**common, "image_size": spec.image_size, "patch_size": spec.patch_size}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=spec.projection_dim)
    torch.manual_seed(seed)
    random.seed(seed)
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": spec.image_size},
                                         crop_size={"height": spec.image_size, "width": spec.image_size})
    return model, tokenizer, image_processor


def save_tiny_clip(out_dir: str | Path, *, seed: int = 0, **kwargs: Any) -> Path:
    """Build a tiny CLIP and save model, tokenizer and image processor to ``out_dir``; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for part in build_tiny_clip(seed=seed, **kwargs):
        part.save_pretrained(out)
    return out
