"""The GIRL-DETR model: shapes, real-sized forward/backward, masking, predict API, head size."""

from __future__ import annotations

import pytest
import torch

from timegrpo.config.core import ConfigError
from timegrpo.detr.config import DetrModelConfig
from timegrpo.detr.model import ConcatCrossAttention, DecoderLayer, GirlDetr, rank_windows, sine_embed


def _inputs(b: int, lv: int, dv: int, lt: int, dt: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, lv, dv, generator=g)
    text = torch.randn(b, lt, dt, generator=g)
    vmask = torch.ones(b, lv, dtype=torch.bool)
    tmask = torch.ones(b, lt, dtype=torch.bool)
    return video, vmask, text, tmask


def test_real_sized_forward_backward_on_cpu() -> None:
    """75 clips x 2818-d video, 32 x 512-d text, batch 32, the spec's default model (hidden 256, 8 heads, FFN 1024)."""
    torch.manual_seed(0)
    model = GirlDetr(DetrModelConfig(), video_dim=2818, text_dim=512)
    video, vmask, text, tmask = _inputs(32, 75, 2818, 32, 512)
    vmask[1, 60:] = False
    tmask[2, 10:] = False
    out = model(video, vmask, text, tmask)
    assert len(out.spans) == 3
    assert out.spans[-1].shape == (32, 10, 2) and out.logits[-1].shape == (32, 10, 2)
    assert out.iou[-1].shape == (32, 10) and out.saliency.shape == (32, 75)
    assert torch.all((out.spans[-1] > 0) & (out.spans[-1] < 1))
    loss = sum(s.sum() for s in out.spans) + sum(lg.logsumexp(-1).sum() for lg in out.logits) + out.saliency.sum()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["video_proj.blocks.0.2.weight"] is not None and grads["video_proj.blocks.0.2.weight"].abs().sum() > 0
    assert grads["cmi.t_from_v.in_proj_weight"].abs().sum() > 0
    assert grads["decoder.0.gate_proj.weight"].abs().sum() > 0  # its step time is the bench's business, not a test's


def test_head_parameters_are_about_027M_for_the_default_model() -> None:
    model = GirlDetr(DetrModelConfig(), video_dim=2818, text_dim=512)
    heads = set(model.head_parameter_names())
    n = sum(p.numel() for name, p in model.named_parameters() if name in heads)
    assert 0.25e6 < n < 0.29e6, n
    assert {name.split(".")[0] for name in heads} == {"span_head", "class_head", "iou_head"}


def test_padding_does_not_change_predictions() -> None:
    """A query alone and the same query padded next to a longer video give the same outputs (eval mode)."""
    torch.manual_seed(1)
    model = GirlDetr(DetrModelConfig(hidden_dim=32, nheads=4, dim_feedforward=64), video_dim=10, text_dim=6).eval()
    video, vmask, text, tmask = _inputs(2, 12, 10, 5, 6, seed=2)
    vmask[0, 8:] = False
    tmask[0, 3:] = False
    both = model(video, vmask, text, tmask)
    alone = model(video[:1, :8], vmask[:1, :8], text[:1, :3], tmask[:1, :3])
    torch.testing.assert_close(both.spans[-1][:1], alone.spans[-1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both.logits[-1][:1], alone.logits[-1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both.saliency[:1, :8], alone.saliency, atol=1e-5, rtol=1e-4)


def test_text_changes_the_output() -> None:
    torch.manual_seed(2)
    model = GirlDetr(DetrModelConfig(hidden_dim=32, nheads=4, dim_feedforward=64), video_dim=10, text_dim=6).eval()
    video, vmask, text, tmask = _inputs(1, 12, 10, 5, 6)
    a = model(video, vmask, text, tmask)
    b = model(video, vmask, -text, tmask)
    assert (a.logits[-1] - b.logits[-1]).abs().max() > 1e-4
    assert (a.saliency - b.saliency).abs().max() > 1e-4
    # the span head starts at zero (DAB-DETR), so the first spans are the learned anchors
    torch.testing.assert_close(a.spans[0], torch.sigmoid(model.anchors).expand_as(a.spans[0]))


def test_predict_returns_ranked_windows_in_seconds() -> None:
    torch.manual_seed(3)
    model = GirlDetr(DetrModelConfig(hidden_dim=32, nheads=4, dim_feedforward=64), video_dim=10, text_dim=6)
    model.train()
    video, vmask, text, tmask = _inputs(2, 20, 10, 4, 6)
    vmask[1, 15:] = False
    ranked = model.predict(video, vmask, text, tmask, clip_len=2.0, durations=[39.5, None])
    assert model.training  # restored
    assert [len(r) for r in ranked] == [10, 10]
    for r, hi in zip(ranked, (39.5, 30.0)):
        scores = [w[2] for w in r]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= e <= hi for s, e, _ in r)
    # windows are the final spans scaled by L * clip_len
    with torch.no_grad():
        out = model.eval()(video, vmask, text, tmask)
    c, w = out.spans[-1][1].T
    top = int(out.logits[-1][1].softmax(-1)[:, 0].argmax())
    s, e, _ = rank_windows(out, vmask, 2.0)[1][0]
    assert abs(s - max(0.0, float(c[top] - w[top] / 2)) * 30.0) < 1e-4 and abs(e - min(1.0, float(c[top] + w[top] / 2)) * 30.0) < 1e-4


def test_sine_embed_distinguishes_positions() -> None:
    e = sine_embed(torch.tensor([[0.1], [0.11], [0.9]]), 16)
    assert e.shape == (3, 16)
    assert (e[0] - e[1]).norm() < (e[0] - e[2]).norm()


def _identity(layer: torch.nn.Linear) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.eye(layer.weight.shape[0]))
        layer.bias.zero_()


def test_concatenated_cross_attention_keeps_content_and_position_apart() -> None:
    """d = 2, one head, identity projections: logit_j = (tgt . m_j + p . r_j) / sqrt(4), no cross terms."""
    attn = ConcatCrossAttention(2, 1, dropout=0.0, first=False).eval()
    for layer in (attn.q_content, attn.q_sine, attn.k_content, attn.k_pos, attn.v, attn.out):
        _identity(layer)
    tgt, pos_query = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]])
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    mem_pos = torch.tensor([[[0.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    pad = torch.tensor([[False, False, True]])  # the third clip is padding
    out = attn(tgt, torch.zeros(1, 1, 2), pos_query, memory, mem_pos, pad)
    # logits: clip 0: (1 + 0) / 2 = 0.5, clip 1: (0 + 2) / 2 = 1.0 -> softmax 0.377541, 0.622459
    torch.testing.assert_close(out, torch.tensor([[[0.377541, 0.622459]]]), atol=1e-6, rtol=0)
    # the additive reading would score (tgt + p) . (m + r) / sqrt(2): clip 1 = 3 / 1.414 -> a different answer
    add = torch.softmax(torch.tensor([1.0, 3.0]) / 2**0.5, 0)
    assert abs(add[1].item() - 0.622459) > 0.1


def test_positional_query_scale_and_width_modulation_by_hand() -> None:
    cfg = DetrModelConfig(hidden_dim=8, nheads=2, dim_feedforward=16, dec_layers=2)
    model = GirlDetr(cfg, video_dim=4, text_dim=4)
    with torch.no_grad():  # query scale = 3 everywhere, w_ref = sigmoid(0) = 0.5
        model.query_scale.layers[-1].weight.zero_()
        model.query_scale.layers[-1].bias.fill_(3.0)
        model.ref_width_head.layers[-1].weight.zero_()
        model.ref_width_head.layers[-1].bias.zero_()
    tgt, ref = torch.randn(1, 2, 8), torch.tensor([[[0.3, 0.25], [0.7, 0.5]]])
    sine = sine_embed(ref[..., :1], 8)  # the center embedded as the clip positions are
    factor = torch.tensor([0.5 / 0.25, 0.5 / 0.5]).view(1, 2, 1)
    torch.testing.assert_close(model.positional_query(tgt, ref, first=True), sine * factor)  # no scale in layer 1
    torch.testing.assert_close(model.positional_query(tgt, ref, first=False), sine * factor * 3)
    plain = GirlDetr(DetrModelConfig(hidden_dim=8, nheads=2, dim_feedforward=16, width_modulation=False,
                                     query_scale=False), video_dim=4, text_dim=4)
    torch.testing.assert_close(plain.positional_query(tgt, ref, first=False), sine)
    with pytest.raises(ConfigError, match="position_concat"):
        DetrModelConfig(position_concat=False)
    additive = GirlDetr(DetrModelConfig(hidden_dim=8, nheads=2, dim_feedforward=16, position_concat=False,
                                        width_modulation=False, query_scale=False), video_dim=4, text_dim=4)
    assert isinstance(additive.decoder[0].cross_attn, torch.nn.MultiheadAttention)
    assert isinstance(model.decoder[0].cross_attn, ConcatCrossAttention) and model.decoder[0].cross_attn.q_pos is not None
    assert model.decoder[1].cross_attn.q_pos is None  # DAB: the positional query joins the content in layer 1 only


def test_text_guided_gating_injects_the_sentence_prior_into_the_queries_by_hand() -> None:
    layer = DecoderLayer(DetrModelConfig(hidden_dim=4, nheads=2, dim_feedforward=8, dropout=0.0), gated=True,
                         first=True).eval()
    _identity(layer.gate_proj)
    tgt, sentence = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]), torch.tensor([[2.0, 0.0, 0.0, -2.0]])
    out, gate = layer.text_gate(tgt, sentence)
    # a = s; g = sigmoid(tgt * a) = [0.880797, 0.5, 0.5, 0.5]; tgt + g * a = [2.761594, 0, 0, -1]
    x = torch.tensor([2.761594, 0.0, 0.0, -1.0])
    expect = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-5)  # LayerNorm at init: [1.6569, -.3144, -.3144, -1.0282]
    assert gate is None
    torch.testing.assert_close(out[0, 0], expect, atol=1e-5, rtol=0)
    assert out[0, 0].tolist() == pytest.approx([1.65692, -0.31436, -0.31436, -1.02820], abs=1e-4)


@pytest.mark.parametrize("target", ["queries", "cross_attention"])
def test_text_guided_gating_target(target: str) -> None:
    """With the video cross-attention silenced, the sentence still reaches the queries only when TGG injects it."""
    torch.manual_seed(4)
    cfg = DetrModelConfig(hidden_dim=8, nheads=2, dim_feedforward=16, dropout=0.0, tgg_target=target)
    layer = DecoderLayer(cfg, gated=True, first=True).eval()
    with torch.no_grad():
        layer.cross_attn.v.weight.zero_(), layer.cross_attn.v.bias.zero_()
        layer.cross_attn.out.weight.zero_(), layer.cross_attn.out.bias.zero_()
    tgt, qpos, pq = torch.randn(1, 3, 8), torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    mem, mpos, pad = torch.randn(1, 5, 8), torch.randn(1, 5, 8), torch.zeros(1, 5, dtype=torch.bool)
    a = layer(tgt, qpos, pq, mem, mpos, pad, torch.randn(1, 8))
    b = layer(tgt, qpos, pq, mem, mpos, pad, torch.randn(1, 8))
    assert ((a - b).abs().max() > 1e-3) == (target == "queries")
    _, gate = layer.text_gate(tgt, torch.randn(1, 8))
    assert (gate is None) == (target == "queries")
