"""Tiny offline models: they save, load back, generate from a video, and real video tokens reach them."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from transformers.video_utils import VideoMetadata

from timegrpo.models.tiny import FAMILIES, TinySpec, build_tiny_vlm, number_corpus, save_tiny_vlm

MESSAGES = [{"role": "user", "content": [{"type": "video", "video": "clip.mp4"},
                                          {"type": "text", "text": "When does the red square appear?"}]}]


def video_inputs(processor, n_frames: int, fps: float, size: int = 56, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n_frames, 3, size, size), dtype=torch.uint8, generator=g)
    text = processor.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    meta = VideoMetadata(total_num_frames=n_frames, fps=fps, frames_indices=list(range(n_frames)),
                         duration=n_frames / fps)
    return processor(text=[text], videos=[frames], video_metadata=[meta], return_tensors="pt",
                     do_sample_frames=False)


@pytest.fixture(scope="module", params=FAMILIES.names())
def saved(request, tmp_path_factory):
    path = save_tiny_vlm(request.param, tmp_path_factory.mktemp(request.param), seed=0)
    return request.param, path


def test_families_are_the_three_qwen_generations():
    assert FAMILIES.names() == ["qwen2_5_vl", "qwen2_vl", "qwen3_vl"]


def test_save_load_generate_from_video(saved):
    family, path = saved
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    assert model.config.model_type == family
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 3e6
    inputs = video_inputs(processor, n_frames=16, fps=2.0)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 8)
    # Same weights after the round trip: the loaded model reproduces the in-memory one exactly.
    fresh, _ = build_tiny_vlm(family, seed=0)
    with torch.no_grad():
        a = model(**inputs).logits
        b = fresh.eval()(**inputs).logits
    torch.testing.assert_close(a, b)


def test_config_token_ids_match_tokenizer(saved):
    _, path = saved
    model = AutoModelForImageTextToText.from_pretrained(path)
    tok = AutoProcessor.from_pretrained(path).tokenizer
    cfg = model.config
    ids = tok.convert_tokens_to_ids
    assert cfg.video_token_id == ids("<|video_pad|>")
    assert cfg.image_token_id == ids("<|image_pad|>")
    assert cfg.vision_start_token_id == ids("<|vision_start|>")
    assert cfg.vision_end_token_id == ids("<|vision_end|>")
    assert cfg.text_config.pad_token_id == tok.pad_token_id == ids("<|endoftext|>")
    assert tok.eos_token == "<|im_end|>"
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert tok.eos_token_id in model.generation_config.eos_token_id
    assert cfg.text_config.vocab_size == len(tok)


def test_tokenizer_keeps_tags_and_numbers_whole():
    model, processor = build_tiny_vlm("qwen2_5_vl")
    tok = processor.tokenizer
    text = "<think>it starts early</think><answer>12.50 to 17.80</answer>"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text  # tags are not special: decoding keeps them
    assert len(tok.tokenize("<answer>")) == 1
    assert set(number_corpus(1.0)) <= {tok.decode(tok(t)["input_ids"]) for t in number_corpus(1.0)}


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_video_grid_matches_video_pad_tokens(family):
    model, processor = build_tiny_vlm(family)
    for n_frames in (4, 10, 16):
        inputs = video_inputs(processor, n_frames=n_frames, fps=2.0)
        t, h, w = inputs["video_grid_thw"][0].tolist()
        assert t == (n_frames + 1) // 2  # frames are paired along time (temporal_patch_size 2)
        merge = processor.video_processor.merge_size
        n_pad = int((inputs["input_ids"] == model.config.video_token_id).sum())
        assert n_pad == t * h * w // merge**2
        assert inputs["pixel_values_videos"].shape[0] == t * h * w


def test_qwen3_vl_video_carries_frame_timestamps():
    _, processor = build_tiny_vlm("qwen3_vl")
    inputs = video_inputs(processor, n_frames=8, fps=2.0)
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    # 8 frames at 2 fps = 4 temporal patches, stamped at the centre of each frame pair.
    for stamp in ("<0.2 seconds>", "<1.2 seconds>", "<2.2 seconds>", "<3.2 seconds>"):
        assert stamp in text


@pytest.mark.parametrize("fps", [1.0, 2.0, 4.0])
def test_qwen2_5_vl_temporal_positions_follow_fps(fps):
    """The temporal mRoPE id of a video advances by tokens_per_second * temporal_patch_size / fps per frame pair.

    With tokens_per_second 2 this is 4, 2 and 1 at 1, 2 and 4 fps; a truncated ``second_per_grid_ts``
    (an int 0 at 4 fps) or a dropped one (defaulting to 1 s) gives a wrong step and fails here.
    """
    spec = TinySpec()
    model, processor = build_tiny_vlm("qwen2_5_vl", spec=spec)
    assert model.config.vision_config.tokens_per_second == spec.tokens_per_second == 2
    inputs = video_inputs(processor, n_frames=16, fps=fps)
    torch.testing.assert_close(inputs["second_per_grid_ts"], torch.tensor([2.0 / fps]))
    pos, _ = model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"], attention_mask=inputs["attention_mask"],
    )
    is_video = inputs["input_ids"][0] == model.config.video_token_id
    steps = sorted(set(pos[0, 0][is_video].tolist()))
    expected = spec.tokens_per_second * 2 / fps
    assert len(steps) == 8
    assert all(b - a == expected for a, b in zip(steps, steps[1:]))
