"""Rollouts: G completions per prompt, masks up to EOS, log-probs equal to a plain forward with pixels."""

from __future__ import annotations

import pytest
import torch
from transformers.video_utils import VideoMetadata

from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.models.vision import VisionCallCounter
from timegrpo.prompts import prepare_prompts
from timegrpo.rollout import SamplingParams, completion_logps, generate, sequence_logps


def prompts(processor, lengths=(8, 12), fps=2.0):
    g = torch.Generator().manual_seed(3)
    videos = [torch.randint(0, 256, (n, 3, 56, 56), dtype=torch.uint8, generator=g) for n in lengths]
    meta = [VideoMetadata(total_num_frames=n, fps=fps, frames_indices=list(range(n)), duration=n / fps)
            for n in lengths]
    msgs = [[{"role": "user", "content": [{"type": "video", "video": f"v{i}"},
                                          {"type": "text", "text": "When does it happen?" + " really" * i}]}]
            for i in range(len(lengths))]
    return prepare_prompts(processor, msgs, videos, meta)


def test_generate_shapes_masks_and_one_vision_call():
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    inputs = prompts(processor)
    counter = VisionCallCounter(model)
    torch.manual_seed(0)
    batch = generate(model, processor, inputs, SamplingParams(num_generations=4, max_completion_length=12))
    assert batch.num_rows == 8 and batch.video_index == [0] * 4 + [1] * 4
    assert batch.completion_ids.shape[1] <= 12
    assert len(batch.completions) == 8
    # mask is 1 exactly up to and including the first EOS
    eos = set(model.generation_config.eos_token_id)
    for ids, m, trunc in zip(batch.completion_ids, batch.completion_mask, batch.truncated):
        n = int(m.sum())
        assert trunc == (not any(int(t) in eos for t in ids[:n]))
        if not trunc:
            assert int(ids[n - 1]) in eos
    logps = completion_logps(model, batch, temperature=1.0)
    assert counter.calls == 1  # generation and the log-prob forward shared one vision pass
    assert logps.shape == batch.completion_ids.shape


def test_logps_match_a_plain_forward_with_pixels():
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    inputs = prompts(processor, fps=4.0)  # fps != 2: second_per_grid_ts must reach the forward
    torch.manual_seed(1)
    batch = generate(model, processor, inputs, SamplingParams(num_generations=2, max_completion_length=6,
                                                              min_completion_length=6))
    got = completion_logps(model, batch, temperature=0.7)
    for row in (0, 3):
        p = batch.video_index[row]
        ids = torch.cat([batch.prompt_ids[row], batch.completion_ids[row]])[None]
        mask = torch.cat([batch.prompt_mask[row], batch.completion_mask[row]])[None]
        types = torch.cat([inputs["mm_token_type_ids"][p], torch.zeros(6, dtype=torch.long)])[None]
        pix_rows = inputs["video_grid_thw"].prod(-1).tolist()
        start = sum(pix_rows[:p])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, mm_token_type_ids=types,
                           pixel_values_videos=inputs["pixel_values_videos"][start:start + pix_rows[p]],
                           video_grid_thw=inputs["video_grid_thw"][p:p + 1],
                           second_per_grid_ts=inputs["second_per_grid_ts"][p:p + 1]).logits
        lp = torch.log_softmax(logits[0, -7:-1] / 0.7, -1).gather(-1, batch.completion_ids[row][:, None])[:, 0]
        valid = batch.completion_mask[row].bool()
        torch.testing.assert_close(got[row][valid], lp[valid], rtol=1e-4, atol=1e-4)


def test_sampling_never_emits_vision_placeholders():
    """A <|video_pad|> in a completion would break every later forward; generation suppresses them."""
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    with torch.no_grad():  # make the placeholder tokens the most likely ones
        head = model.lm_head.weight
        for tid in (model.config.video_token_id, model.config.image_token_id):
            head[tid] = 50 * head.abs().max()
    batch = generate(model, processor, prompts(processor), SamplingParams(num_generations=4,
                                                                          max_completion_length=6))
    ids = set(batch.completion_ids[batch.completion_mask.bool()].tolist())
    assert model.config.video_token_id not in ids and model.config.image_token_id not in ids
    completion_logps(model, batch)  # and the log-prob forward works


def test_sequence_logps_cover_prompt_text_and_agree_with_completion_logps():
    """Every token after the first: the continuation's columns are completion_logps; the loss mask counts the
    prompt's text tokens and the completion, never padding or video placeholders."""
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    inputs = prompts(processor)
    torch.manual_seed(2)
    batch = generate(model, processor, inputs, SamplingParams(num_generations=2, max_completion_length=5))
    logps, mask = sequence_logps(model, batch)
    lp = batch.prompt_ids.shape[1]
    assert logps.shape == mask.shape == (batch.num_rows, lp + batch.completion_ids.shape[1] - 1)
    torch.testing.assert_close(logps[:, lp - 1:], completion_logps(model, batch), rtol=1e-5, atol=1e-5)
    assert torch.equal(mask[:, lp - 1:], batch.completion_mask)
    video = inputs["mm_token_type_ids"].repeat_interleave(2, dim=0)[:, 1:] != 0
    assert not mask[:, :lp - 1][video | (batch.prompt_mask[:, 1:] == 0)].any()
    prompt_text = (batch.prompt_mask[:, 1:] == 1) & ~video & (batch.prompt_mask[:, :-1] == 1)
    assert torch.equal(mask[:, :lp - 1].bool(), prompt_text) and prompt_text.sum() > 0


def _trainable_grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_chunked_logprob_forwards_equal_one_forward(family):
    """``batch_size`` (train.logprob_batch_size) runs the rows in chunks: bit-identical log-probs with and
    without grad, and (float32) the same gradient on every trainable parameter, merger included, up to the
    order of the sums (Qwen2.5-VL replays the merger, Qwen3-VL re-runs the tower: once per forward, shared by
    the chunks)."""
    from timegrpo.models.loading import prepare_policy
    from timegrpo.models.vision import encode_videos

    model, processor = build_tiny_vlm(family, seed=0)
    model = prepare_policy(model)  # LLM + merger train, tower frozen
    inputs = prompts(processor, lengths=(8, 12, 6))
    torch.manual_seed(0)
    batch = generate(model, processor, inputs, SamplingParams(num_generations=3, max_completion_length=7))
    batch.features = encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    one = completion_logps(model, batch, temperature=0.9)
    for size in (1, 4, 50):
        assert torch.equal(completion_logps(model, batch, temperature=0.9, batch_size=size), one), size
    weights = torch.randn_like(one)

    def grads(size):
        model.zero_grad()
        logps = completion_logps(model, batch, temperature=0.9, with_grad=True, batch_size=size)
        ((logps * weights * batch.completion_mask).sum()).backward()
        return logps.detach(), _trainable_grads(model)

    ref_logps, ref = grads(None)
    assert any(".merger." in n for n in ref) and any("language_model" in n for n in ref)
    counter = VisionCallCounter(model)
    logps, got = grads(2)  # 9 rows in chunks of 2
    assert counter.calls == (family == "qwen3_vl")  # a re-run tower runs once, not once per chunk
    assert torch.equal(logps, ref_logps)
    assert got.keys() == ref.keys()
    for name, g in ref.items():  # the same sums in another order: a few float32 ulps of the largest entry
        assert (got[name] - g).abs().max() <= 4e-6 * g.abs().max(), name
    rows = [4, 1, 7]  # a subset of rows, in any order, chunked
    assert torch.equal(completion_logps(model, batch, rows=rows, temperature=0.9, batch_size=2), one[rows])


def test_chunked_sequence_logps_equal_one_forward():
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    inputs = prompts(processor)
    torch.manual_seed(2)
    batch = generate(model, processor, inputs, SamplingParams(num_generations=3, max_completion_length=5))
    logps, mask = sequence_logps(model, batch)
    for size in (1, 4):
        got, got_mask = sequence_logps(model, batch, batch_size=size)
        assert torch.equal(got, logps) and torch.equal(got_mask, mask)
