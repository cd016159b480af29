"""Rollouts: tokenised prompts + videos -> G completions per prompt -> a :class:`RolloutBatch`; and log-probs.

The prompts come tokenised from :mod:`timegrpo.prompts` (this module knows no chat template). A
:class:`SequenceBatch` is any batch of prompts with one continuation per row: sampled completions
(:class:`RolloutBatch`, GRPO) or SFT targets; :func:`completion_logps` scores the continuations and
:func:`sequence_logps` every text token (SFT with the prompt in the loss).

TRL's GRPOTrainer has no video path (no video columns, no ``pixel_values_videos`` in its loss forward), which
is why this module is ours. Every forward that sees a completion also sees the video exactly as generation
did: the same ``video_grid_thw``, ``second_per_grid_ts`` (Qwen2.5-VL places frames in time with it; the
Time-R1 code drops it in the loss forward, which is wrong whenever fps != 2) and ``mm_token_type_ids``, and the
vision tower's output computed once per prompt per step (:mod:`timegrpo.models.vision`).

Rows are ordered prompt-major: rows ``i*G .. i*G+G-1`` are the G completions of prompt ``i``. With
``share_prefix`` (``train.share_prompt_prefix``) the language model also computes each prompt once for its rows,
in generation and in :func:`completion_logps` (:mod:`timegrpo.models.prefix`); the results are the row-by-row
computation's up to float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from timegrpo.models.prefix import (
    attention_implementation,
    pack,
    packed_forward_supported,
    prefill,
    prompt_positions,
    video_kwargs,
)
from timegrpo.models.vision import VideoFeatures, encode_videos, encoder_outputs, select_videos

logger = logging.getLogger(__name__)


@dataclass
class SamplingParams:
    """Every sampling parameter, set explicitly (never the checkpoint's ``generation_config`` defaults)."""

    num_generations: int = 8
    max_completion_length: int = 200
    min_completion_length: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    do_sample: bool = True

    def generate_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_completion_length,
            "min_new_tokens": self.min_completion_length,
            "num_return_sequences": self.num_generations,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw


@dataclass
class SequenceBatch:
    """Prompts with one continuation per row, and what every forward over them needs: the processor's
    prompt-side tensors and the vision tower's output. GRPO's rollouts and SFT's targets are both this.

    Shapes: ``N = P*G`` rows (``G = num_generations`` rows per prompt, 1 for SFT), ``Lp`` prompt length (left
    padded), ``Lc`` continuation length (right padded).
    """

    prompt_ids: torch.Tensor  # (N, Lp)
    prompt_mask: torch.Tensor  # (N, Lp)
    completion_ids: torch.Tensor  # (N, Lc)
    completion_mask: torch.Tensor  # (N, Lc): 1 up to and including EOS
    video_index: list[int]  # (N,) row -> video of the step
    prompt_inputs: dict[str, Any]  # the processor's per-prompt tensors (P rows)
    features: VideoFeatures
    num_generations: int

    @property
    def num_rows(self) -> int:
        return self.completion_ids.shape[0]


@dataclass
class RolloutBatch(SequenceBatch):
    """G sampled completions for each of P prompts (a :class:`SequenceBatch`) with their decoded text."""

    truncated: torch.Tensor  # (N,) bool: no EOS within max_completion_length
    completions: list[str]  # (N,) decoded, special tokens skipped


def completion_mask(completion_ids: torch.Tensor, eos_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``(N, Lc)`` with 1 up to and including the first EOS, and a ``(N,)`` "no EOS" (truncated) flag.

    >>> m, t = completion_mask(torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8]]), eos_ids=[2])
    >>> m.tolist(), t.tolist()
    ([[1, 1, 0, 0], [1, 1, 1, 1]], [False, True])
    """
    is_eos = torch.isin(completion_ids, torch.as_tensor(list(eos_ids), device=completion_ids.device))
    n, length = completion_ids.shape
    first = torch.full((n,), length, dtype=torch.long, device=completion_ids.device)
    has = is_eos.any(dim=1)
    first[has] = is_eos.int().argmax(dim=1)[has]
    positions = torch.arange(length, device=completion_ids.device).expand(n, -1)
    return (positions <= first.unsqueeze(1)).long(), ~has


def vision_token_ids(model: nn.Module) -> list[int]:
    """Ids of the image/video placeholder and vision start/end tokens, which a completion must never contain.

    A sampled ``<|video_pad|>`` would be taken for a video position by every later forward (the placeholder
    count then disagrees with the video features), so generation suppresses them.
    """
    cfg = model.config
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return sorted({int(getattr(cfg, n)) for n in names if getattr(cfg, n, None) is not None})


def eos_token_ids(model: nn.Module, processor: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None) or processor.tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos)


@torch.no_grad()
def generate(model: nn.Module, processor: Any, prompt_inputs: dict[str, Any], params: SamplingParams,
             features: VideoFeatures | None = None, *, share_prefix: bool = False) -> RolloutBatch:
    """Sample ``params.num_generations`` completions per prompt with HF ``generate``.

    The vision tower runs once for the batch (or not at all when ``features`` are given), not once per
    completion: the features are handed to generate as ``mm_encoder_outputs``. With ``share_prefix`` each
    prompt is also prefilled once and its G rows decode from that one KV cache
    (:func:`timegrpo.models.prefix.prefill`); otherwise ``generate`` repeats every prompt G times
    (``num_return_sequences``) and prefills each copy. Both sample the same tokens (same positions, logits
    equal up to float rounding, same random draws).
    """
    from timegrpo.models.loading import unwrap

    base = unwrap(model)
    if features is None:
        features = encode_videos(model, prompt_inputs["pixel_values_videos"], prompt_inputs["video_grid_thw"])
    n_prompts = prompt_inputs["input_ids"].shape[0]
    g = params.num_generations
    mm = encoder_outputs(model, features, range(n_prompts))
    eos = eos_token_ids(base, processor)
    pad = processor.tokenizer.pad_token_id
    kwargs = {**params.generate_kwargs(), "eos_token_id": eos, "pad_token_id": pad,
              "suppress_tokens": vision_token_ids(base)}
    if share_prefix:
        seqs = base.generate(**prefill(base, prompt_inputs, mm, g), **{**kwargs, "num_return_sequences": 1})
    else:
        text_inputs = {k: v for k, v in prompt_inputs.items() if k != "pixel_values_videos"}
        seqs = base.generate(**text_inputs, mm_encoder_outputs=mm, **kwargs)
    lp = prompt_inputs["input_ids"].shape[1]
    completion_ids = seqs[:, lp:]
    mask, truncated = completion_mask(completion_ids, eos)
    completion_ids = completion_ids.masked_fill(mask == 0, pad)
    index = [i for i in range(n_prompts) for _ in range(g)]
    texts = processor.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return RolloutBatch(
        prompt_ids=prompt_inputs["input_ids"].repeat_interleave(g, dim=0),
        prompt_mask=prompt_inputs["attention_mask"].repeat_interleave(g, dim=0),
        completion_ids=completion_ids,
        completion_mask=mask,
        truncated=truncated,
        completions=texts,
        video_index=index,
        prompt_inputs=prompt_inputs,
        features=features,
        num_generations=g,
    )


def _selective_log_softmax(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[ids]`` row by row, without materialising the full ``(N, T, V)`` log-probs at once."""
    out = []
    for row_logits, row_ids in zip(logits, ids):
        lp = torch.log_softmax(row_logits.float(), dim=-1)
        out.append(lp.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1))
    return torch.stack(out)


def _logits(model: nn.Module, batch: SequenceBatch, rows: Sequence[int], mm: Any, *,
            logits_to_keep: int) -> torch.Tensor:
    """The model's logits ``(n, K, V)`` over prompt + continuation of ``rows`` (the last ``logits_to_keep``
    positions; 0 = all), the video seen as generation saw it: ``mm`` is :func:`_video_outputs`' per-video
    output; gradients as the caller's grad mode says."""
    idx = torch.as_tensor(list(rows), dtype=torch.long)
    ids = torch.cat([batch.prompt_ids[idx], batch.completion_ids[idx]], dim=1)
    mask = torch.cat([batch.prompt_mask[idx], batch.completion_mask[idx]], dim=1)
    types = torch.cat([_prompt_types(batch)[idx], torch.zeros_like(batch.completion_ids[idx])], dim=1)
    videos = [batch.video_index[r] for r in rows]
    out = model(input_ids=ids, attention_mask=mask, mm_token_type_ids=types,
                mm_encoder_outputs=select_videos(mm, videos), logits_to_keep=logits_to_keep, use_cache=False,
                **video_kwargs(batch.prompt_inputs, videos))
    return out.logits


def _video_outputs(model: nn.Module, batch: SequenceBatch, with_grad: bool) -> dict[str, Any]:
    """``mm_encoder_outputs`` of every video of the batch, once per forward pass over its rows (with
    ``with_grad``, the merger replay or the re-run tower is shared by all row chunks: one graph, one run)."""
    return encoder_outputs(model, batch.features, range(len(batch.features)), with_grad=with_grad,
                           pixel_values_videos=batch.prompt_inputs.get("pixel_values_videos"))


def row_chunks(rows: Sequence[int], batch_size: int | None) -> list[list[int]]:
    """``rows`` cut into consecutive chunks of at most ``batch_size`` (None: one chunk).

    >>> row_chunks(range(5), 2), row_chunks(range(3), None)
    ([[0, 1], [2, 3], [4]], [[0, 1, 2]])
    """
    rows = list(rows)
    if batch_size is None or batch_size >= len(rows):
        return [rows]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    return [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]


def _prompt_types(batch: SequenceBatch) -> torch.Tensor:
    """``mm_token_type_ids`` of each row's prompt ``(N, Lp)``: 0 for text, non-zero for vision placeholders."""
    return batch.prompt_inputs["mm_token_type_ids"].repeat_interleave(batch.num_generations, dim=0)


def _shared_logits(model: nn.Module, batch: SequenceBatch, rows: Sequence[int], mm: Any,
                   positions: torch.Tensor) -> torch.Tensor:
    """The logits ``(n, Lc, V)`` predicting the continuation tokens of ``rows``, from one packed forward in
    which each prompt of the rows is computed once (:func:`timegrpo.models.prefix.pack`; ``positions``: the
    prompts' mRoPE positions ``(3, P, Lp)``); rows ``r`` of prompt ``r // G``."""
    g, lc = batch.num_generations, batch.completion_ids.shape[1]
    groups: dict[int, list[int]] = {}
    for r in rows:
        groups.setdefault(r // g, []).append(r)
    prompts = list(groups)
    slot = {r: (i, b) for i, p in enumerate(prompts) for b, r in enumerate(groups[p])}
    dev = batch.completion_ids.device
    row_t = torch.as_tensor(list(rows), dtype=torch.long, device=dev)
    at_i = torch.as_tensor([slot[r][0] for r in rows], dtype=torch.long, device=dev)
    at_b = torch.as_tensor([slot[r][1] for r in rows], dtype=torch.long, device=dev)
    blocks = max(len(v) for v in groups.values())
    ids = batch.completion_ids.new_zeros(len(prompts), blocks, lc)
    ids[at_i, at_b] = batch.completion_ids[row_t]
    mask = batch.completion_mask.new_zeros(len(prompts), blocks, lc)
    mask[at_i, at_b] = batch.completion_mask[row_t]
    first = torch.as_tensor([groups[p][0] for p in prompts], dtype=torch.long, device=batch.prompt_ids.device)
    p_t = torch.as_tensor(prompts, dtype=torch.long, device=positions.device)
    packed = pack(batch.prompt_ids[first], batch.prompt_mask[first],
                  batch.prompt_inputs["mm_token_type_ids"][p_t.to(batch.prompt_ids.device)], positions[:, p_t],
                  ids, mask)
    videos = [batch.video_index[groups[p][0]] for p in prompts]
    out = model(**packed.forward_kwargs(model), mm_encoder_outputs=select_videos(mm, videos), use_cache=False,
                **video_kwargs(batch.prompt_inputs, videos))
    return out.logits.view(len(prompts), blocks, lc, -1)[at_i, at_b]


_warned_unshared: set[str] = set()


def _can_share(model: nn.Module, share_prefix: bool) -> bool:
    """``share_prefix``, unless the model's attention takes no 4-D mask (said once per implementation)."""
    if not share_prefix or packed_forward_supported(model):
        return share_prefix
    impl = attention_implementation(model)
    if impl not in _warned_unshared:
        _warned_unshared.add(impl)
        logger.warning("share_prompt_prefix: attn_implementation %s takes no 4-D attention mask, so the log-prob "
                       "forwards run row by row (generation still prefills each prompt once); use sdpa to share "
                       "them", impl)
    return False


def completion_logps(model: nn.Module, batch: SequenceBatch, *, rows: Sequence[int] | None = None,
                     temperature: float = 1.0, with_grad: bool = False,
                     batch_size: int | None = None, share_prefix: bool = False) -> torch.Tensor:
    """Log-probs ``(n, Lc)`` of the continuation tokens under ``model`` for ``rows`` (all by default).

    Logits are divided by ``temperature`` first (as TRL does), so the ratio compares the same distribution
    that sampled the tokens. ``with_grad`` builds the graph (train forward), with merger gradients when the
    merger trains; otherwise the cached vision features are reused. ``batch_size`` bounds the rows of one
    model forward (``train.logprob_batch_size``): the rows run in chunks and the results are concatenated, so
    values and gradients are those of one forward over all rows. With gradients every chunk's graph is kept
    until the caller's backward: a chunk bounds the forward's working memory (attention, MLP, logits) and,
    with gradient checkpointing, the recomputation of the backward, not the activations kept between.

    ``share_prefix`` computes each prompt once per chunk for all its rows in the chunk (one packed row per
    prompt, :func:`timegrpo.models.prefix.pack`): the same log-probs and gradients, up to float rounding,
    for ``Lp + K*Lc`` tokens per prompt instead of ``K*(Lp + Lc)``. A chunk still holds at most ``batch_size``
    completions; a prompt whose rows fall in two chunks is computed in each.
    """
    rows = list(range(batch.num_rows)) if rows is None else list(rows)
    lc = batch.completion_ids.shape[1]
    share = _can_share(model, share_prefix)
    ctx = torch.enable_grad() if with_grad else torch.no_grad()
    with ctx:
        mm = _video_outputs(model, batch, with_grad)
        positions = prompt_positions(model, batch.prompt_inputs) if share else None
        out = []
        for chunk in row_chunks(rows, batch_size):
            if positions is not None:
                logits = _shared_logits(model, batch, chunk, mm, positions) / temperature
            else:
                logits = _logits(model, batch, chunk, mm, logits_to_keep=lc + 1)[:, :-1, :] / temperature
            out.append(_selective_log_softmax(logits, batch.completion_ids[torch.as_tensor(chunk, dtype=torch.long)]))
        return torch.cat(out) if len(out) > 1 else out[0]


def sequence_logps(model: nn.Module, batch: SequenceBatch, *, with_grad: bool = False,
                   batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs ``(N, Lp+Lc-1)`` of every token after the first (prompt and continuation), and the mask of
    the ones a language-modelling loss counts: text tokens (no padding, no video placeholders) whose
    predecessor is a real token. Column ``Lp-1+j`` is continuation token ``j`` (what :func:`completion_logps`
    returns at ``j``). ``batch_size`` chunks the rows as in :func:`completion_logps`."""
    ids = torch.cat([batch.prompt_ids, batch.completion_ids], dim=1)
    real = torch.cat([batch.prompt_mask, batch.completion_mask], dim=1).bool()
    text = torch.cat([_prompt_types(batch) == 0, batch.completion_mask.bool()], dim=1)
    mask = (real & text)[:, 1:] & real[:, :-1]
    ctx = torch.enable_grad() if with_grad else torch.no_grad()
    with ctx:
        mm = _video_outputs(model, batch, with_grad)
        out = []
        for chunk in row_chunks(range(batch.num_rows), batch_size):
            logits = _logits(model, batch, chunk, mm, logits_to_keep=0)[:, :-1, :]
            out.append(_selective_log_softmax(logits, ids[torch.as_tensor(chunk, dtype=torch.long), 1:]))
        return (torch.cat(out) if len(out) > 1 else out[0]), mask.long()
