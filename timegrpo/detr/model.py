"""GIRL-DETR: a DETR for moment retrieval over clip features (SPEC section 4).

Pipeline (``d = hidden_dim``; ``B`` queries, ``L`` clips, ``T`` tokens, ``Q`` moment queries)::

    video (B, L, Dv) --proj--> (B, L, d)   text (B, T, Dt) --proj--> (B, T, d)
    Cross-Modal Interaction: video<-text, text<-video, video<-updated text (residual + LayerNorm each), FFN
    encoder (3 layers) over [global token, video] with sine positions      -> memory (B, L, d), global (B, d)
    DAB-DETR decoder (3 layers, Q learned anchors (center, width)): each layer's queries get a positional query
    from the sine embedding of their current anchor; after each layer an MLP predicts a logit-space offset and
    the refined anchor (detached) feeds the next layer. Layer 1 has Text-Guided Gating.
    heads: span (the last layer's refinement MLP), class (fg/bg linear) and IoU (MLP), shared by all layers for
    the auxiliary outputs; saliency on memory x global token.

The decoder follows DAB-DETR (``model.position_concat``, ``width_modulation``, ``query_scale``, all on by
default): content and position are concatenated per head in the cross-attention, the positional query (the
sine embedding of the anchor center) is scaled element-wise by an MLP of the content from the second layer on
and multiplied by ``w_ref / w``; with ``position_concat`` false the position is added to the content instead
(the earlier reading, no modulation). Text-Guided Gating (``model.tgg_target``, default ``queries``) injects the
gated sentence prior into the queries of the first layer, as the paper's abstract puts it; ``cross_attention``
gates that layer's video cross-attention output instead (the earlier reading).

Departures from the papers (ours): Text-Guided Gating's "queries attend to the max-pooled sentence vector" is a
single-key attention, which equals a linear map of that vector, so it is implemented as one
(``a = W s``, ``gate = sigmoid(q * a)``); the 1-d positional query embeds the anchor center with the full width
``d`` (as the clip positions), where DAB-DETR's 2-d one splits ``d`` between x and y; the intermediate layers'
refinement MLPs belong to the decoder and only the last layer's MLP is the span head (DAB-DETR's unshared
option), so that RL on the heads (~0.27M parameters for d=256) changes the final spans without moving the
anchors the decoder layers see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from timegrpo.detr.config import DetrModelConfig
from timegrpo.detr.matcher import cxw_to_xx

HEAD_MODULES = ("span_head", "class_head", "iou_head")


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``logit(x)`` with ``x`` clamped to ``[eps, 1 - eps]``.

    >>> round(inverse_sigmoid(torch.tensor(0.5)).item(), 6)
    0.0
    """
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def sine_embed(x: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine/cosine embedding of values in [0, 1]: ``(..., k)`` -> ``(..., k * dim)`` (``dim`` even per value).

    >>> sine_embed(torch.zeros(3, 2), 8).shape
    torch.Size([3, 16])
    """
    freqs = temperature ** (2 * (torch.arange(dim // 2, device=x.device, dtype=torch.float32)) / dim)
    angles = x.unsqueeze(-1) * (2 * math.pi) / freqs  # (..., k, dim/2)
    emb = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # (..., k, dim)
    return emb.flatten(-2)


class MLP(nn.Module):
    """``n_layers`` linear layers with ReLU between them."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, n_layers: int) -> None:
        super().__init__()
        dims = [d_in] + [d_hidden] * (n_layers - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class InputProjection(nn.Module):
    """Moment-DETR style projection: per layer LayerNorm -> dropout -> Linear (-> ReLU except the last)."""

    def __init__(self, d_in: int, d: int, n_layers: int, input_dropout: float, dropout: float) -> None:
        super().__init__()
        dims = [d_in] + [d] * n_layers
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(a), nn.Dropout(input_dropout if i == 0 else dropout), nn.Linear(a, b))
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.blocks) - 1:
                x = F.relu(x)
        return x


def _ffn(d: int, d_ff: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d))


class CrossModalInteraction(nn.Module):
    """Video attends to text, text attends to the updated video, video attends to the updated text; each with
    residual + LayerNorm; then a residual FFN on the video. Returns ``(video (B, L, d), text (B, T, d))``."""

    def __init__(self, d: int, nheads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.v_from_t = nn.MultiheadAttention(d, nheads, dropout=dropout, batch_first=True)
        self.t_from_v = nn.MultiheadAttention(d, nheads, dropout=dropout, batch_first=True)
        self.v_from_t2 = nn.MultiheadAttention(d, nheads, dropout=dropout, batch_first=True)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(4))
        self.ffn = _ffn(d, d_ff, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, v: torch.Tensor, v_pad: torch.Tensor, t: torch.Tensor, t_pad: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.norms[0](v + self.drop(self.v_from_t(v, t, t, key_padding_mask=t_pad, need_weights=False)[0]))
        t = self.norms[1](t + self.drop(self.t_from_v(t, v, v, key_padding_mask=v_pad, need_weights=False)[0]))
        v = self.norms[2](v + self.drop(self.v_from_t2(v, t, t, key_padding_mask=t_pad, need_weights=False)[0]))
        v = self.norms[3](v + self.drop(self.ffn(v)))
        return v, t


class EncoderLayer(nn.Module):
    """Post-norm self-attention layer with positions added to queries and keys (DETR)."""

    def __init__(self, d: int, nheads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, nheads, dropout=dropout, batch_first=True)
        self.ffn = _ffn(d, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        q = x + pos
        x = self.norm1(x + self.drop(self.attn(q, q, x, key_padding_mask=pad, need_weights=False)[0]))
        return self.norm2(x + self.drop(self.ffn(x)))


def _heads(x: torch.Tensor, nheads: int) -> torch.Tensor:
    """``(B, N, d)`` -> ``(B, h, N, d / h)``."""
    b, n, d = x.shape
    return x.view(b, n, nheads, d // nheads).transpose(1, 2)


class ConcatCrossAttention(nn.Module):
    """DAB-DETR's conditional cross-attention over the memory, per head on concatenated halves::

        q = [W_qc tgt (+ W_qp query_pos in the first layer) ; W_qs pos_query]      (B, h, Q, 2 d/h)
        k = [W_kc memory (+ W_kp mem_pos in the first layer) ; W_kp mem_pos]        (B, h, L, 2 d/h)
        out = W_o softmax(q k^T / sqrt(2 d / h)) W_v memory

    so the content and the positional similarity are two separate terms of the logit. ``pos_query (B, Q, d)``
    is the sine embedding of the anchor center (after query scale and width modulation, see
    :meth:`GirlDetr.positional_query`); ``mem_pad (B, L)`` True on padding."""

    def __init__(self, d: int, nheads: int, dropout: float, first: bool) -> None:
        super().__init__()
        self.nheads, self.dropout = nheads, dropout
        self.q_content, self.q_sine, self.k_content, self.k_pos, self.v, self.out = (nn.Linear(d, d) for _ in range(6))
        self.q_pos = nn.Linear(d, d) if first else None

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, pos_query: torch.Tensor, memory: torch.Tensor,
                mem_pos: torch.Tensor, mem_pad: torch.Tensor) -> torch.Tensor:
        q, k, k_pos = self.q_content(tgt), self.k_content(memory), self.k_pos(mem_pos)
        if self.q_pos is not None:
            q, k = q + self.q_pos(query_pos), k + k_pos
        h = self.nheads
        q = torch.cat([_heads(q, h), _heads(self.q_sine(pos_query), h)], dim=-1)
        k = torch.cat([_heads(k, h), _heads(k_pos, h)], dim=-1)
        keep = (~mem_pad)[:, None, None, :]  # (B, 1, 1, L): True where attention is allowed
        out = F.scaled_dot_product_attention(q, k, _heads(self.v(memory), h), attn_mask=keep,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).flatten(2))


class DecoderLayer(nn.Module):
    """Self-attention among queries, conditional cross-attention to the memory, FFN; optionally Text-Guided Gating.

    Cross-attention: :class:`ConcatCrossAttention` (``position_concat``, DAB-DETR) or one
    ``nn.MultiheadAttention`` on ``tgt + query_pos`` against ``memory + mem_pos`` (the additive reading).
    Text-Guided Gating (first layer): ``a = W s`` for the max-pooled sentence ``s`` (single-key attention, see the
    module docstring), ``g = sigmoid(tgt * a)``; ``tgg_target: queries`` adds ``g * a`` to the queries (residual +
    LayerNorm) before they attend, ``cross_attention`` multiplies the cross-attention output by ``g``.
    """

    def __init__(self, cfg: DetrModelConfig, gated: bool, first: bool) -> None:
        super().__init__()
        d, nheads, p = cfg.hidden_dim, cfg.nheads, cfg.dropout
        self.self_attn = nn.MultiheadAttention(d, nheads, dropout=p, batch_first=True)
        self.cross_attn: nn.Module = (ConcatCrossAttention(d, nheads, p, first) if cfg.position_concat
                                      else nn.MultiheadAttention(d, nheads, dropout=p, batch_first=True))
        self.ffn = _ffn(d, cfg.dim_feedforward, p)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3))
        self.drop = nn.Dropout(p)
        self.gate_proj = nn.Linear(d, d) if gated else None
        self.gate_norm = nn.LayerNorm(d) if gated and cfg.tgg_target == "queries" else None

    def text_gate(self, tgt: torch.Tensor, sentence: torch.Tensor | None,
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text-Guided Gating: ``a = W s`` (``sentence (B, d)``), ``g = sigmoid(tgt * a)``. Returns the queries
        ``LayerNorm(tgt + g * a)`` and no gate (``tgg_target: queries``), or ``tgt`` unchanged and ``g (B, Q, d)``
        for the cross-attention output (``cross_attention``); ``(tgt, None)`` on an ungated layer."""
        if self.gate_proj is None or sentence is None:
            return tgt, None
        attended = self.gate_proj(sentence).unsqueeze(1)  # (B, 1, d): single-key attention to the sentence
        gate = torch.sigmoid(tgt * attended)
        if self.gate_norm is None:
            return tgt, gate
        return self.gate_norm(tgt + self.drop(gate * attended)), None

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, pos_query: torch.Tensor, memory: torch.Tensor,
                mem_pos: torch.Tensor, mem_pad: torch.Tensor, sentence: torch.Tensor | None) -> torch.Tensor:
        tgt, gate = self.text_gate(tgt, sentence)
        q = tgt + query_pos
        tgt = self.norms[0](tgt + self.drop(self.self_attn(q, q, tgt, need_weights=False)[0]))
        if isinstance(self.cross_attn, ConcatCrossAttention):
            injected = self.cross_attn(tgt, query_pos, pos_query, memory, mem_pos, mem_pad)
        else:
            injected = self.cross_attn(tgt + query_pos, memory + mem_pos, memory, key_padding_mask=mem_pad,
                                       need_weights=False)[0]
        if gate is not None:  # the earlier reading: gate the cross-attention output
            injected = gate * injected
        tgt = self.norms[1](tgt + self.drop(injected))
        return self.norms[2](tgt + self.drop(self.ffn(tgt)))


@dataclass
class DetrOutput:
    """Per decoder layer (last = final): ``spans (B, Q, 2)`` cxw in [0, 1], ``logits (B, Q, 2)`` (fg, no-object),
    ``iou (B, Q)`` predicted IoU in [0, 1]; ``saliency (B, L)`` or None."""

    spans: list[torch.Tensor]
    logits: list[torch.Tensor]
    iou: list[torch.Tensor]
    saliency: torch.Tensor | None

    @property
    def final(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.spans[-1], self.logits[-1], self.iou[-1]


class GirlDetr(nn.Module):
    """The model; see the module docstring. ``video_dim``/``text_dim`` are the input feature widths."""

    def __init__(self, cfg: DetrModelConfig, video_dim: int, text_dim: int) -> None:
        super().__init__()
        d, h, ff, p = cfg.hidden_dim, cfg.nheads, cfg.dim_feedforward, cfg.dropout
        self.cfg, self.video_dim, self.text_dim = cfg, video_dim, text_dim
        self.video_proj = InputProjection(video_dim, d, cfg.n_input_proj, cfg.input_dropout, p)
        self.text_proj = InputProjection(text_dim, d, cfg.n_input_proj, cfg.input_dropout, p)
        self.cmi = CrossModalInteraction(d, h, ff, p) if cfg.cross_modal_interaction else None
        self.global_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.global_pos = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder = nn.ModuleList(EncoderLayer(d, h, ff, p) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(
            DecoderLayer(cfg, gated=cfg.text_guided_gating and i == 0, first=i == 0) for i in range(cfg.dec_layers))
        self.dec_norm = nn.LayerNorm(d)
        self.anchors = nn.Parameter(self._init_anchors(cfg.num_queries))
        self.tgt_embed = nn.Parameter(torch.randn(cfg.num_queries, d) * 0.02)
        self.ref_point_head = MLP(d, d, d, 2)
        self.query_scale = MLP(d, d, d, 2) if cfg.query_scale else None
        self.ref_width_head = MLP(d, d, 1, 2) if cfg.width_modulation else None
        self.refine_heads = nn.ModuleList(MLP(d, d, 2, 3) for _ in range(cfg.dec_layers - 1))
        self.span_head = MLP(d, d, 2, 3)
        self.class_head = nn.Linear(d, 2)
        self.iou_head = MLP(d, d, 1, 3)
        self.saliency_video = nn.Linear(d, d) if cfg.saliency_head else None
        self.saliency_global = nn.Linear(d, d) if cfg.saliency_head else None
        for head in [*self.refine_heads, self.span_head]:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)

    @staticmethod
    def _init_anchors(n: int) -> torch.Tensor:
        """Anchor logits: centers spread evenly over (0, 1), widths 0.25."""
        centers = (torch.arange(n, dtype=torch.float32) + 0.5) / n
        widths = torch.full((n,), 0.25)
        return inverse_sigmoid(torch.stack([centers, widths], dim=1))

    def head_parameter_names(self) -> list[str]:
        """Names of the span/class/IoU head parameters (what the RL stage may change)."""
        return [n for n, _ in self.named_parameters() if n.split(".")[0] in HEAD_MODULES]

    def encode(self, video: torch.Tensor, video_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> memory ``(B, L, d)``, memory positions ``(B, L, d)``, global token ``(B, d)``, sentence ``(B, d)``."""
        v_pad, t_pad = ~video_mask, ~text_mask
        v, t = self.video_proj(video), self.text_proj(text)
        if self.cmi is not None:
            v, t = self.cmi(v, v_pad, t, t_pad)
        length = video_mask.sum(1, keepdim=True).clamp(min=1).float()
        centers = (torch.arange(v.shape[1], device=v.device).float().unsqueeze(0) + 0.5) / length  # (B, L)
        pos = sine_embed(centers.unsqueeze(-1), v.shape[-1])
        x = torch.cat([self.global_token.expand(v.shape[0], -1, -1), v], dim=1)
        x_pos = torch.cat([self.global_pos.expand(v.shape[0], -1, -1), pos], dim=1)
        pad = torch.cat([torch.zeros_like(v_pad[:, :1]), v_pad], dim=1)
        for layer in self.encoder:
            x = layer(x, x_pos, pad)
        sentence = t.masked_fill(t_pad.unsqueeze(-1), float("-inf")).max(dim=1).values
        return x[:, 1:], pos, x[:, 0], sentence

    def positional_query(self, tgt: torch.Tensor, ref: torch.Tensor, first: bool) -> torch.Tensor:
        """DAB-DETR's positional query of the concatenated cross-attention, ``(B, Q, d)``: the sine embedding of
        the anchor center (the same embedding as the clip positions of the memory), times ``query_scale(tgt)``
        from the second layer on, times ``w_ref / w`` (``w_ref = sigmoid(MLP(tgt))``, ``w`` the anchor width)
        with width modulation. ``tgt (B, Q, d)`` content queries, ``ref (B, Q, 2)`` anchors (center, width)."""
        pos = sine_embed(ref[..., :1], tgt.shape[-1])
        if self.query_scale is not None and not first:
            pos = pos * self.query_scale(tgt)
        if self.ref_width_head is not None:
            pos = pos * (torch.sigmoid(self.ref_width_head(tgt)) / ref[..., 1:].clamp(min=1e-4))
        return pos

    def forward(self, video: torch.Tensor, video_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> DetrOutput:
        """``video (B, L, Dv)``, ``video_mask (B, L)`` True on real clips, ``text (B, T, Dt)``, ``text_mask (B, T)``."""
        memory, mem_pos, glob, sentence = self.encode(video, video_mask, text, text_mask)
        b, d = memory.shape[0], memory.shape[-1]
        tgt = self.tgt_embed.unsqueeze(0).expand(b, -1, -1)
        ref = torch.sigmoid(self.anchors).unsqueeze(0).expand(b, -1, -1)
        spans, logits, ious = [], [], []
        for i, layer in enumerate(self.decoder):
            query_pos = self.ref_point_head(sine_embed(ref, d // 2))
            pos_query = self.positional_query(tgt, ref, first=i == 0)
            tgt = layer(tgt, query_pos, pos_query, memory, mem_pos, ~video_mask, sentence if i == 0 else None)
            hs = self.dec_norm(tgt)
            head = self.span_head if i == len(self.decoder) - 1 else self.refine_heads[i]
            new_ref = torch.sigmoid(inverse_sigmoid(ref) + head(hs))
            spans.append(new_ref)
            logits.append(self.class_head(hs))
            ious.append(torch.sigmoid(self.iou_head(hs)).squeeze(-1))
            ref = new_ref.detach()
        saliency = None
        if self.saliency_video is not None and self.saliency_global is not None:
            saliency = (self.saliency_video(memory) * self.saliency_global(glob).unsqueeze(1)).sum(-1) / math.sqrt(d)
        return DetrOutput(spans, logits, ious, saliency)

    @torch.no_grad()
    def predict(self, video: torch.Tensor, video_mask: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                clip_len: float, durations: list[float | None] | None = None, score: str = "fg",
                ) -> list[list[tuple[float, float, float]]]:
        """Ranked windows per query: ``[[(start_s, end_s, score), ...] x Q] x B``, best first (see
        :func:`rank_windows`). Inputs as in :meth:`forward`; runs in eval mode."""
        was_training = self.training
        self.eval()
        out = self.forward(video, video_mask, text, text_mask)
        self.train(was_training)
        return rank_windows(out, video_mask, clip_len, durations, score)


def rank_windows(out: DetrOutput, video_mask: torch.Tensor, clip_len: float,
                 durations: list[float | None] | None = None, score: str = "fg",
                 ) -> list[list[tuple[float, float, float]]]:
    """The final layer's spans as seconds, sorted by score: ``[[(start, end, score), ...] x Q] x B``.

    Normalised spans are scaled by each query's feature length ``L_b * clip_len`` and clipped to
    ``[0, duration]`` (the feature length when no duration is given). ``score``: ``fg`` = p(foreground)
    (Moment-DETR), ``fg_x_iou`` = p(foreground) x predicted IoU.

    >>> out = DetrOutput([torch.tensor([[[0.5, 0.2], [0.25, 0.5]]])], [torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])],
    ...                  [torch.tensor([[0.9, 0.1]])], None)
    >>> [(round(s, 2), round(e, 2), round(p, 3)) for s, e, p in rank_windows(out, torch.ones(1, 5, dtype=torch.bool), 2.0)[0]]
    [(0.0, 5.0, 0.731), (4.0, 6.0, 0.269)]
    """
    spans, logits, iou = (t.detach() for t in out.final)
    scores = logits.softmax(-1)[..., 0]
    if score == "fg_x_iou":
        scores = scores * iou
    elif score != "fg":
        raise ValueError(f"unknown score {score!r}; known: fg, fg_x_iou")
    seconds = video_mask.sum(1).float() * clip_len
    xx = cxw_to_xx(spans).clamp(0, 1) * seconds[:, None, None]
    result = []
    for b in range(xx.shape[0]):
        hi = float(seconds[b]) if durations is None or durations[b] is None else float(durations[b])
        order = scores[b].argsort(descending=True).tolist()
        result.append([(min(float(xx[b, q, 0]), hi), min(float(xx[b, q, 1]), hi), float(scores[b, q]))
                       for q in order])
    return result
