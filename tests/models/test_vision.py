"""The vision tower runs once per prompt and its reused output gives exactly the logits of a normal forward."""

from __future__ import annotations

import pytest
import torch
from transformers.video_utils import VideoMetadata

from timegrpo.models.loading import merger_modules, set_trainable
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.models.vision import VisionCallCounter, encode_videos, encoder_outputs


def batch(processor, n_videos: int = 2):
    g = torch.Generator().manual_seed(1)
    frames = [torch.randint(0, 256, (n, 3, 56, 56), dtype=torch.uint8, generator=g) for n in (8, 12)[:n_videos]]
    msgs = [{"role": "user", "content": [{"type": "video", "video": "v"}, {"type": "text", "text": "When?"}]}]
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    meta = [VideoMetadata(total_num_frames=len(f), fps=2.0, frames_indices=list(range(len(f))), duration=len(f) / 2)
            for f in frames]
    return processor(text=[text] * n_videos, videos=frames, video_metadata=meta, return_tensors="pt",
                     do_sample_frames=False, padding=True)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_cached_features_reproduce_logits_and_merger_gradients(family):
    model, processor = build_tiny_vlm(family, seed=0)
    set_trainable(model, freeze_vision_tower=True, train_merger=True)
    inputs = batch(processor)
    ref = model(**inputs).logits
    counter = VisionCallCounter(model)
    feats = encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    assert counter.calls == 1
    text_inputs = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
    no_grad = model(**text_inputs, mm_encoder_outputs=encoder_outputs(model, feats, [0, 1])).logits
    torch.testing.assert_close(no_grad, ref)
    with_grad = model(**text_inputs, mm_encoder_outputs=encoder_outputs(
        model, feats, [0, 1], with_grad=True, pixel_values_videos=inputs["pixel_values_videos"])).logits
    torch.testing.assert_close(with_grad, ref)
    with_grad.square().mean().backward()
    merger_grads = [p.grad for m in merger_modules(model) for p in m.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in merger_grads[:1])
    replayed = family != "qwen3_vl"
    assert counter.calls == (1 if replayed else 2)
    counter.remove()


def test_generate_reuses_features_for_every_completion():
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    inputs = batch(processor)
    counter = VisionCallCounter(model)
    feats = encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    text_inputs = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
    torch.manual_seed(0)
    out = model.generate(**text_inputs, mm_encoder_outputs=encoder_outputs(model, feats, [0, 1]),
                         num_return_sequences=4, do_sample=True, max_new_tokens=5, min_new_tokens=5)
    assert out.shape[0] == 8
    assert counter.calls == 1
    # Greedy decoding from cached features equals greedy decoding from pixels.
    a = model.generate(**inputs, do_sample=False, max_new_tokens=6, min_new_tokens=6)
    b = model.generate(**text_inputs, mm_encoder_outputs=encoder_outputs(model, feats, [0, 1]), do_sample=False,
                       max_new_tokens=6, min_new_tokens=6)
    assert torch.equal(a, b)


def test_counter_counts_videos_per_call():
    model, processor = build_tiny_vlm("qwen2_vl", seed=0)
    inputs = batch(processor)
    counter = VisionCallCounter(model)
    encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    assert (counter.calls, counter.videos) == (1, 2)
