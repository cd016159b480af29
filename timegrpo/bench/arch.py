"""Random-weight models of the published Qwen2.5-VL-3B/7B architectures, built offline for benchmarks.

The shapes are the ``config.json`` values of ``Qwen/Qwen2.5-VL-3B-Instruct`` and ``Qwen/Qwen2.5-VL-7B-Instruct``
(hidden sizes, layers, heads, KV heads, MLP widths, vocabulary, vision depth/width, window attention layout),
hard-coded here so that a GPU machine with no network can build the same computation. Only the tokenizer is
not the real one: the tiny byte-level BPE of :mod:`timegrpo.models.tiny` (with the Qwen special tokens) stands
in for it, while the embedding matrix keeps the published vocabulary size, so the LM head costs what it costs
in the real model. Ids the tokenizer does not know decode to nothing, which is harmless for timing.

:func:`shrink` keeps the architecture but scales it down (fewer layers, fewer heads at the same head size,
a smaller vocabulary), for CPU runs and tests; :func:`parameter_counts` counts parameters on the meta device
without allocating anything.

>>> s = shrink(ARCHS.get("qwen2_5_vl_3b"), layers=2, heads_divisor=8, vocab_size=1024)
>>> (s.num_hidden_layers, s.vision_depth, s.hidden_size, s.head_dim, s.vision_hidden_size, s.fullatt_block_indexes)
(2, 2, 256, 128, 160, (1,))
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from timegrpo.registry import Registry


@dataclass(frozen=True)
class ArchShapes:
    """The sizes of a Qwen2.5-VL model (names as in its ``config.json``)."""

    hidden_size: int = field(metadata={"help": "text hidden size"})
    intermediate_size: int = field(metadata={"help": "text MLP width"})
    num_hidden_layers: int = field(metadata={"help": "text decoder layers"})
    num_attention_heads: int = field(metadata={"help": "text attention heads"})
    num_key_value_heads: int = field(metadata={"help": "text KV heads (GQA)"})
    vocab_size: int = field(metadata={"help": "embedding rows"})
    tie_word_embeddings: bool = field(metadata={"help": "LM head shares the embedding matrix"})
    vision_depth: int = field(default=32, metadata={"help": "vision transformer blocks"})
    vision_hidden_size: int = field(default=1280, metadata={"help": "vision width"})
    vision_intermediate_size: int = field(default=3420, metadata={"help": "vision MLP width"})
    vision_num_heads: int = field(default=16, metadata={"help": "vision attention heads"})
    fullatt_block_indexes: tuple[int, ...] = field(default=(7, 15, 23, 31),
                                                   metadata={"help": "vision blocks with full (not window) attention"})
    window_size: int = field(default=112, metadata={"help": "vision window attention size (pixels)"})
    tokens_per_second: int = field(default=2, metadata={"help": "temporal position ids per second"})
    rope_theta: float = field(default=1_000_000.0, metadata={"help": "text RoPE base"})
    mrope_section: tuple[int, int, int] = field(default=(16, 24, 24), metadata={"help": "mRoPE (t, h, w) split"})
    max_position_embeddings: int = field(default=128_000, metadata={"help": "text context length"})
    rms_norm_eps: float = field(default=1e-6, metadata={"help": "RMSNorm epsilon"})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def vision_head_dim(self) -> int:
        return self.vision_hidden_size // self.vision_num_heads


#: Published architectures by name.
ARCHS: Registry[ArchShapes] = Registry("architecture")
ARCHS.register("qwen2_5_vl_3b", ArchShapes(
    hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
    vocab_size=151936, tie_word_embeddings=True))
ARCHS.register("qwen2_5_vl_7b", ArchShapes(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
    vocab_size=152064, tie_word_embeddings=False))


def shrink(shapes: ArchShapes, *, layers: int | None = None, heads_divisor: int = 1,
           vocab_size: int | None = None) -> ArchShapes:
    """The same architecture, smaller: ``layers`` text layers (the vision depth scaled in proportion, at least
    1), attention heads divided by ``heads_divisor`` at the same head size (widths follow), a smaller vocabulary.

    Full-attention vision blocks keep the published rhythm (every 8th block) or, with fewer than 8 blocks, the last.
    """
    if heads_divisor < 1 or shapes.num_attention_heads % heads_divisor or shapes.vision_num_heads % heads_divisor:
        raise ValueError(f"heads_divisor {heads_divisor} must divide the text heads ({shapes.num_attention_heads}) "
                         f"and the vision heads ({shapes.vision_num_heads})")
    n_layers = layers or shapes.num_hidden_layers
    if n_layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    depth = max(1, round(shapes.vision_depth * n_layers / shapes.num_hidden_layers))
    heads = shapes.num_attention_heads // heads_divisor
    kv = max(1, shapes.num_key_value_heads // heads_divisor)
    while heads % kv:
        kv -= 1
    v_heads = shapes.vision_num_heads // heads_divisor
    full = tuple(k for k in range(depth) if (k + 1) % 8 == 0) or (depth - 1,)
    return replace(
        shapes, num_hidden_layers=n_layers, num_attention_heads=heads, num_key_value_heads=kv,
        hidden_size=heads * shapes.head_dim, intermediate_size=round(shapes.intermediate_size / heads_divisor),
        vision_depth=depth, vision_num_heads=v_heads, vision_hidden_size=v_heads * shapes.vision_head_dim,
        vision_intermediate_size=round(shapes.vision_intermediate_size / heads_divisor),
        fullatt_block_indexes=full, vocab_size=vocab_size or shapes.vocab_size,
    )


def arch_config(shapes: ArchShapes, token_ids: dict[str, int]) -> Any:
    """A ``Qwen2_5_VLConfig`` of ``shapes`` whose special token ids are the tokenizer's (``token_ids`` as
    :func:`timegrpo.models.tiny._special_ids` returns them)."""
    from transformers import Qwen2_5_VLConfig

    text = {
        "vocab_size": shapes.vocab_size, "hidden_size": shapes.hidden_size,
        "intermediate_size": shapes.intermediate_size, "num_hidden_layers": shapes.num_hidden_layers,
        "num_attention_heads": shapes.num_attention_heads, "num_key_value_heads": shapes.num_key_value_heads,
        "max_position_embeddings": shapes.max_position_embeddings, "rms_norm_eps": shapes.rms_norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": shapes.rope_theta,
                            "mrope_section": list(shapes.mrope_section)},
        "tie_word_embeddings": shapes.tie_word_embeddings,
        "bos_token_id": token_ids["bos"], "eos_token_id": token_ids["eos"], "pad_token_id": token_ids["pad"],
    }
    vision = {
        "depth": shapes.vision_depth, "hidden_size": shapes.vision_hidden_size,
        "intermediate_size": shapes.vision_intermediate_size, "num_heads": shapes.vision_num_heads,
        "out_hidden_size": shapes.hidden_size, "tokens_per_second": shapes.tokens_per_second,
        "window_size": shapes.window_size, "fullatt_block_indexes": list(shapes.fullatt_block_indexes),
    }
    return Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=shapes.tie_word_embeddings,
        image_token_id=token_ids["image"], video_token_id=token_ids["video"],
        vision_start_token_id=token_ids["vision_start"], vision_end_token_id=token_ids["vision_end"],
    )


def _tokenizer_ids() -> tuple[Any, dict[str, int]]:
    from timegrpo.models.tiny import _special_ids, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    return tokenizer, _special_ids(tokenizer)


def parameter_counts(shapes: ArchShapes) -> dict[str, int]:
    """Parameters of the model of ``shapes``, counted on the meta device (nothing allocated):
    ``total``, ``vision`` (tower + merger), ``text_embedding`` and ``text_body`` (decoder layers + final norm,
    plus an untied LM head)."""
    import torch
    from transformers import AutoModelForImageTextToText

    _, ids = _tokenizer_ids()
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(arch_config(shapes, ids))
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    embedding = model.model.language_model.embed_tokens.weight.numel()
    return {"total": total, "vision": vision, "text_embedding": embedding, "text_body": total - vision - embedding}


def save_arch_model(shapes: ArchShapes, out_dir: str | Path, *, dtype: str = "float32", seed: int = 0,
                    min_pixels: int = 4 * 28 * 28, max_pixels: int = 16384 * 28 * 28) -> Path:
    """Build a random-weight model of ``shapes`` with the tiny tokenizer and the real Qwen2.5-VL processor
    classes, ``save_pretrained`` it (with the processor) to ``out_dir``; returns the path.

    The weights are drawn on the GPU when there is one: on the CPU, ``normal_`` in bf16 is single-threaded
    (about 30M values/s), minutes for a 7B model. The draws then differ from a CPU build of the same seed."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    from timegrpo.models.loading import DTYPES
    from timegrpo.models.tiny import TinySpec, build_tiny_processor

    tokenizer, ids = _tokenizer_ids()
    if shapes.vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {shapes.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForImageTextToText.from_config(arch_config(shapes, ids), dtype=DTYPES[dtype])
    model.generation_config = GenerationConfig(bos_token_id=ids["bos"], eos_token_id=[ids["eos"], ids["endoftext"]],
                                               pad_token_id=ids["pad"], do_sample=False)
    processor = build_tiny_processor("qwen2_5_vl", tokenizer, TinySpec(min_pixels=min_pixels, max_pixels=max_pixels))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out
