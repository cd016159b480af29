"""Shared-prefix computation: each prompt, video included, is computed once for all its G completions.

GRPO samples G completions per prompt, and a row-by-row computation processes P x G rows of prompt + completion:
each prompt (thousands of visual tokens at Time-R1's settings) G times in generation's prefill and in every
log-prob forward, forward and backward. A prompt's hidden states, keys and values do not depend on what follows
it, so its G completions can all attend to one computation of it:

* generation (:func:`prefill`): the P prompts are prefilled once (all but their last token), the KV cache is
  shown to the P x G rows (:class:`SharedPrefixLayer` holds each prompt's keys and values once) and HF
  ``generate`` continues from it, given the prompt's own mRoPE positions, so completion token ``j`` sits where
  ``generate`` without the cache puts it: one after the prompt's last position, plus ``j``;
* log-prob forwards (:func:`pack`): one row per prompt holding the prompt and then its completions, one block of
  ``Lc`` tokens each, with a 4-D attention mask (:func:`shared_prefix_mask`: a completion token sees its
  prompt's real tokens and, causally, its own completion, never another completion) and position ids (every
  block starts where the prompt ends). One forward over P rows of ``Lp + K*Lc`` tokens gives each completion's
  logits as P*K rows of ``Lp + Lc`` tokens would; with gradients, the G completions' gradients reach the one
  prompt computation summed, as they reach the G copies of the repeated computation and are summed in the
  shared weights. This is Prefix Grouper's result (arXiv 2506.05433) obtained with a mask over one packed row
  instead of a split attention, so transformers' own forward (vision features, deepstack, gradient
  checkpointing) runs unchanged.

The mask is built in the form the language model's attention implementation takes (:data:`ATTENTION_MASKS`:
``sdpa`` and ``eager``); an implementation without arbitrary 4-D masks (flash attention) cannot run the packed
forward (:func:`packed_forward_supported`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicLayer

from timegrpo.models.loading import unwrap
from timegrpo.registry import Registry


def video_kwargs(prompt_inputs: dict[str, Any], index: Sequence[int] | None = None) -> dict[str, Any]:
    """The per-video tensors of a forward (``video_grid_thw``, and ``second_per_grid_ts`` where the processor
    gives it: Qwen2.5-VL places frames in time with it), for rows using videos ``index`` (all by default)."""
    out = {"video_grid_thw": prompt_inputs["video_grid_thw"]}
    if prompt_inputs.get("second_per_grid_ts") is not None:
        out["second_per_grid_ts"] = torch.as_tensor(prompt_inputs["second_per_grid_ts"])
    if index is not None:
        idx = torch.as_tensor(list(index), dtype=torch.long)
        out = {k: v[idx.to(v.device)] for k, v in out.items()}
    return out


def prompt_positions(model: nn.Module, prompt_inputs: dict[str, Any]) -> torch.Tensor:
    """mRoPE position ids ``(3, P, Lp)`` of the left-padded prompts, computed by the model's own
    ``get_rope_index`` as its forward and ``generate`` compute them (0 at padding; Qwen2.5-VL's frames placed
    in time by ``second_per_grid_ts``, Qwen3-VL's by its timestamp tokens)."""
    inner = unwrap(model).model
    positions, _ = inner.get_rope_index(
        prompt_inputs["input_ids"], mm_token_type_ids=prompt_inputs["mm_token_type_ids"],
        attention_mask=prompt_inputs["attention_mask"], image_grid_thw=prompt_inputs.get("image_grid_thw"),
        **video_kwargs(prompt_inputs))
    return positions


def continuation_positions(positions: torch.Tensor, length: int, blocks: int = 1) -> torch.Tensor:
    """Positions ``(3, P, blocks*length)`` of ``blocks`` continuations of ``length`` tokens after prompts at
    ``positions`` ``(3, P, Lp)`` (left padded, so the last column is each prompt's last token): token ``j`` of
    every block at the prompt's last position + 1 + j on all three axes, where generation puts it.

    >>> continuation_positions(torch.tensor([[[0, 1, 5]]] * 3), 2, blocks=2)[0].tolist()
    [[6, 7, 6, 7]]
    """
    steps = torch.arange(length, device=positions.device).repeat(blocks)
    return positions[..., -1:] + 1 + steps


# ------------------------------------------------------------------------------------------------ generation
class SharedPrefixLayer(DynamicLayer):
    """One decoder layer's KV cache for ``P x copies`` rows whose first ``Lp`` positions are their prompt's:
    the prompt's keys/values ``(P, H, Lp, D)`` are held once, the rows' own ``(P*copies, H, t, D)`` grow as
    decoding goes. Attention gets the rows' full ``(P*copies, H, Lp + t, D)`` keys/values, assembled per call
    (one layer at a time, freed after it), the same bytes a :class:`DynamicLayer` copies in each update."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, copies: int) -> None:
        super().__init__()
        self.prefix_keys, self.prefix_values, self.copies = keys, values, copies
        p, h, _, d = keys.shape
        self.keys = keys.new_empty(p * copies, h, 0, d)
        self.values = values.new_empty(p * copies, h, 0, values.shape[-1])
        self.device = keys.device
        self.is_initialized = True

    def _full(self, prefix: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        p, h, lp, d = prefix.shape
        rows = torch.cat([prefix[:, None].expand(p, self.copies, h, lp, d),
                          own.view(p, self.copies, h, own.shape[-2], d)], dim=-2)
        return rows.view(p * self.copies, h, lp + own.shape[-2], d)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys = torch.cat([self.keys, key_states], dim=-2)
        self.values = torch.cat([self.values, value_states], dim=-2)
        return self._full(self.prefix_keys, self.keys), self._full(self.prefix_values, self.values)

    def get_seq_length(self) -> int:
        return self.prefix_keys.shape[-2] + self.keys.shape[-2]

    def crop(self, tokens_to_remove: int) -> None:
        raise ValueError("a shared-prefix cache cannot be cropped (no assisted decoding on it)")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise ValueError("a shared-prefix cache already spans its rows (no beam search on it)")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise ValueError("a shared-prefix cache keeps all its rows (no beam search on it)")


def shared_prefix_cache(prompt_cache: Cache, copies: int) -> Cache:
    """A cache for ``P x copies`` rows from the prompts' ``prompt_cache`` (P rows), holding each prompt once."""
    return Cache(layers=[SharedPrefixLayer(layer.keys, layer.values, copies) for layer in prompt_cache.layers])


@torch.no_grad()
def prefill(model: nn.Module, prompt_inputs: dict[str, Any], mm_encoder_outputs: dict[str, Any],
            copies: int) -> dict[str, Any]:
    """Prefill each prompt once; returns ``generate`` keyword arguments for ``P x copies`` rows (prompt-major)
    that continue from that cache: ``input_ids``, ``attention_mask``, ``position_ids`` and ``cache``.

    All but the last prompt token are prefilled (P rows, vision features placed as usual), so ``generate``
    runs the last one for every row and samples the first completion token from it, then decodes as it
    would with ``num_return_sequences=copies``: same tokens seen, same positions, same random draws.
    """
    base = unwrap(model)
    ids, mask, types = (prompt_inputs[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids"))
    if ids.shape[1] < 2 or bool(types[:, -1].any()):
        raise ValueError("a shared prefill needs prompts ending in a text token (the chat template's generation "
                         f"prompt); got prompts of {ids.shape[1]} tokens ending in token types {types[:, -1].tolist()}")
    positions = prompt_positions(base, prompt_inputs)
    out = base(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[..., :-1],
               mm_token_type_ids=types[:, :-1], mm_encoder_outputs=mm_encoder_outputs, use_cache=True,
               logits_to_keep=1, **video_kwargs(prompt_inputs))
    return {"input_ids": ids.repeat_interleave(copies, dim=0), "attention_mask": mask.repeat_interleave(copies, dim=0),
            "position_ids": positions.repeat_interleave(copies, dim=1),
            "cache": shared_prefix_cache(out.cache, copies)}


# ------------------------------------------------------------------------------------------ log-prob forwards
def shared_prefix_mask(segments: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Which keys each query may attend to, ``(P, L, L)`` bool (query rows, key columns), in packed rows whose
    token ``i`` belongs to segment ``segments[i]`` (0: the prompt; ``b >= 1``: completion block ``b``) and is a
    real token where ``real (P, L)`` is true: key ``j`` is seen from query ``i`` when ``j <= i``, ``j`` is real,
    and ``j`` is in the prompt or in ``i``'s own block. Every token also sees itself, so the row of a padding
    token is never empty (its output is never used).

    >>> m = shared_prefix_mask(torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([[0, 1, 1, 1, 1, 0]]))
    >>> m[0].int().tolist()
    [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0], [0, 1, 0, 0, 1, 0], [0, 1, 0, 0, 1, 1]]
    """
    length = segments.shape[0]
    idx = torch.arange(length, device=segments.device)
    causal = idx[None, :] <= idx[:, None]
    same = (segments[None, :] == 0) | (segments[None, :] == segments[:, None])
    eye = torch.eye(length, dtype=torch.bool, device=segments.device)
    return ((causal & same)[None] & real.bool()[:, None, :]) | eye


#: ``attn_implementation -> (allowed (P, L, L) bool, dtype) -> the 4-D attention mask it takes``.
ATTENTION_MASKS: Registry[Callable[[torch.Tensor, torch.dtype], torch.Tensor]] = Registry("shared-prefix mask")


@ATTENTION_MASKS.register("sdpa")
def _sdpa_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return allowed[:, None]


@ATTENTION_MASKS.register("eager")
def _eager_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def attention_implementation(model: nn.Module) -> str:
    """The attention implementation of the model's language model (``sdpa``, ``eager``, ``flash_attention_2``...)."""
    return str(unwrap(model).config.get_text_config()._attn_implementation)


def packed_forward_supported(model: nn.Module) -> bool:
    """True when the language model's attention takes the arbitrary 4-D mask :func:`pack` builds."""
    return attention_implementation(model) in ATTENTION_MASKS


@dataclass
class PackedRows:
    """Prompts followed by blocks of their completions, ready for one forward (see the module docstring).

    Shapes: ``P`` packed rows, ``K`` completion blocks of ``Lc`` tokens, ``L = Lp + K*Lc``.
    """

    input_ids: torch.Tensor  # (P, L)
    mm_token_type_ids: torch.Tensor  # (P, L)
    position_ids: torch.Tensor  # (3, P, L)
    allowed: torch.Tensor  # (P, L, L) bool, see shared_prefix_mask
    keep: torch.Tensor  # (K*Lc,) positions whose logits predict the completion tokens, block by block
    blocks: int

    def forward_kwargs(self, model: nn.Module) -> dict[str, Any]:
        """``input_ids``, ``attention_mask`` (as the model's attention takes it), ``position_ids``,
        ``mm_token_type_ids`` and ``logits_to_keep`` of a forward over the packed rows."""
        base = unwrap(model)
        mask = ATTENTION_MASKS.get(attention_implementation(base))(self.allowed, base.dtype)
        return {"input_ids": self.input_ids, "attention_mask": mask, "position_ids": self.position_ids,
                "mm_token_type_ids": self.mm_token_type_ids, "logits_to_keep": self.keep}


def pack(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, prompt_types: torch.Tensor, positions: torch.Tensor,
         completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> PackedRows:
    """Pack P left-padded prompts ``(P, Lp)`` (ids, attention mask, ``mm_token_type_ids``; mRoPE ``positions``
    ``(3, P, Lp)``) with ``K`` completions each ``(P, K, Lc)`` (ids and mask; an absent completion is all
    mask 0). The logits at ``keep`` come out ``(P, K*Lc, V)``: block ``b``'s ``Lc`` logits predict its
    tokens, the first from the prompt's last token (the same logits for every block)."""
    p, lp = prompt_ids.shape
    _, k, lc = completion_ids.shape
    device = prompt_ids.device
    ids = torch.cat([prompt_ids, completion_ids.reshape(p, k * lc)], dim=1)
    real = torch.cat([prompt_mask, completion_mask.reshape(p, k * lc)], dim=1)
    types = torch.cat([prompt_types, prompt_types.new_zeros(p, k * lc)], dim=1)
    segments = torch.cat([torch.zeros(lp, dtype=torch.long, device=device),
                          torch.arange(1, k + 1, device=device).repeat_interleave(lc)])
    position_ids = torch.cat([positions, continuation_positions(positions, lc, blocks=k)], dim=-1)
    starts = lp + lc * torch.arange(k, device=device)
    keep = torch.cat([torch.full((k, 1), lp - 1, dtype=torch.long, device=device), starts[:, None] + torch.arange(lc - 1, device=device)],
                     dim=1).reshape(-1)
    return PackedRows(input_ids=ids, mm_token_type_ids=types, position_ids=position_ids,
                      allowed=shared_prefix_mask(segments, real), keep=keep, blocks=k)
