"""Shared-prefix generation and log-prob forwards give what the row-by-row computation gives (float32, 1e-5):
the same sampled and greedy tokens, log-probs and gradients, for every Qwen family, Qwen2.5-VL at 1, 2 and 4 fps,
one or several prompts of different lengths (left padding), completions of different lengths, chunks that split a
prompt's rows, and row subsets."""

from __future__ import annotations

import pytest
import torch
from transformers.video_utils import VideoMetadata

from timegrpo.models.loading import prepare_policy
from timegrpo.models.prefix import continuation_positions, pack, shared_prefix_mask
from timegrpo.models.tiny import build_tiny_vlm
from timegrpo.models.vision import encode_videos
from timegrpo.prompts import prepare_prompts
from timegrpo.rollout import SamplingParams, completion_logps, generate

#: (family, fps): every family, and Qwen2.5-VL where second_per_grid_ts moves the frames in time.
CASES = [("qwen2_vl", 2.0), ("qwen2_5_vl", 1.0), ("qwen2_5_vl", 2.0), ("qwen2_5_vl", 4.0), ("qwen3_vl", 2.0)]
TOL = 1e-5


def prompts(processor, lengths, fps):
    """Prompts over videos of ``lengths`` frames with questions of different lengths (so left padding)."""
    g = torch.Generator().manual_seed(3)
    videos = [torch.randint(0, 256, (n, 3, 56, 56), dtype=torch.uint8, generator=g) for n in lengths]
    meta = [VideoMetadata(total_num_frames=n, fps=fps, frames_indices=list(range(n)), duration=n / fps)
            for n in lengths]
    msgs = [[{"role": "user", "content": [{"type": "video", "video": f"v{i}"},
                                          {"type": "text", "text": "When does it happen?" + " really" * (3 * i)}]}]
            for i in range(len(lengths))]
    return prepare_prompts(processor, msgs, videos, meta)


def uneven(batch, pad_id):
    """Cut some completions short (as an early EOS does): row r keeps ``Lc - r % 4`` tokens."""
    lc = batch.completion_ids.shape[1]
    for r in range(batch.num_rows):
        keep = lc - r % 4
        batch.completion_mask[r, keep:] = 0
        batch.completion_ids[r, keep:] = pad_id
    return batch


def rollout(family, fps, lengths=(8, 12, 6), g=3, lc=7):
    model, processor = build_tiny_vlm(family, seed=0)
    model = prepare_policy(model)  # LLM + merger train, tower frozen
    inputs = prompts(processor, lengths, fps)
    torch.manual_seed(0)
    batch = generate(model, processor, inputs, SamplingParams(num_generations=g, max_completion_length=lc,
                                                              min_completion_length=lc))
    batch.features = encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    return model, processor, inputs, uneven(batch, processor.tokenizer.pad_token_id)


def test_pack_layout_positions_and_kept_logits():
    """Two prompts (one left-padded) of Lp 3, two blocks of Lc 2: positions continue each prompt's last one."""
    positions = torch.tensor([[0, 1, 2], [0, 0, 1]]).expand(3, 2, 3)  # prompt 1 has one padding token
    types = torch.zeros(2, 3, dtype=torch.long)
    packed = pack(torch.tensor([[5, 6, 7], [0, 8, 9]]), torch.tensor([[1, 1, 1], [0, 1, 1]]), types, positions,
                  torch.tensor([[[1, 2], [3, 4]], [[5, 6], [0, 0]]]), torch.tensor([[[1, 1], [1, 0]], [[1, 1], [0, 0]]]))
    assert packed.input_ids.tolist() == [[5, 6, 7, 1, 2, 3, 4], [0, 8, 9, 5, 6, 0, 0]]
    assert packed.position_ids[0].tolist() == [[0, 1, 2, 3, 4, 3, 4], [0, 0, 1, 2, 3, 2, 3]]
    assert packed.keep.tolist() == [2, 3, 2, 5]  # block 0: prompt's last, own first; block 1 likewise
    seen = packed.allowed[1].int()
    assert seen[3].tolist() == [0, 1, 1, 1, 0, 0, 0]  # block 0's first token: real prompt tokens and itself
    assert seen[5].tolist() == [0, 1, 1, 0, 0, 1, 0]  # an absent block's token: the prompt and itself (unused)
    assert seen[0].tolist() == [1, 0, 0, 0, 0, 0, 0]  # a padding token sees only itself


def test_mask_never_lets_a_completion_see_another():
    segments = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    allowed = shared_prefix_mask(segments, torch.ones(1, 8))[0]
    for q in range(8):
        for k in range(8):
            expected = k <= q and (segments[k] == 0 or segments[k] == segments[q])
            assert bool(allowed[q, k]) == bool(expected), (q, k)
    assert continuation_positions(torch.tensor([[[3, 9]]]).expand(3, 1, 2), 3)[:, 0].tolist() == [[10, 11, 12]] * 3


@pytest.mark.parametrize(("family", "fps"), CASES)
def test_sampled_and_greedy_tokens_equal(family, fps):
    """Sampling with the same seed draws the same tokens (same logits up to rounding, same random draws), and
    greedy decoding (G 1) gives the same tokens, with one prefill per prompt."""
    model, processor = build_tiny_vlm(family, seed=0)
    inputs = prompts(processor, (8, 12), fps)
    out = {}
    for share in (False, True):
        torch.manual_seed(4)
        sampled = generate(model, processor, inputs, SamplingParams(num_generations=3, max_completion_length=9),
                           share_prefix=share)
        greedy = generate(model, processor, inputs, SamplingParams(num_generations=1, max_completion_length=9,
                                                                   do_sample=False), share_prefix=share)
        out[share] = (sampled.completion_ids, sampled.completion_mask, greedy.completion_ids)
    for a, b in zip(out[False], out[True], strict=True):
        assert torch.equal(a, b)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("family", "fps"), CASES)
@pytest.mark.parametrize("lengths", [(10,), (8, 12, 6)], ids=["one-prompt", "three-prompts"])
def test_logps_and_gradients_equal_the_row_by_row_forward(family, fps, lengths):
    model, _, _, batch = rollout(family, fps, lengths)
    valid = batch.completion_mask.bool()
    ref = completion_logps(model, batch, temperature=0.9)
    for size in (None, 2):  # chunks of 2 rows split each prompt's 3 rows
        got = completion_logps(model, batch, temperature=0.9, batch_size=size, share_prefix=True)
        assert (got - ref)[valid].abs().max() <= TOL, size
    weights = torch.randn_like(ref)

    def train_forward(share, size=None):
        model.zero_grad()
        logps = completion_logps(model, batch, temperature=0.9, with_grad=True, batch_size=size, share_prefix=share)
        (logps * weights * batch.completion_mask).sum().backward()
        return logps.detach(), _grads(model)

    ref_logps, ref_grads = train_forward(False)
    assert any(".merger." in n for n in ref_grads) and any("language_model" in n for n in ref_grads)
    for size in (None, 2):
        logps, grads = train_forward(True, size)
        assert (logps - ref_logps)[valid].abs().max() <= TOL
        assert grads.keys() == ref_grads.keys()
        for name, g in ref_grads.items():
            assert (grads[name] - g).abs().max() <= TOL * g.abs().max(), (name, size)
    rows = [4, 1, 7, 0] if batch.num_rows > 4 else [2, 0]
    subset = completion_logps(model, batch, rows=rows, temperature=0.9, batch_size=3, share_prefix=True)
    assert (subset - ref[rows])[valid[rows]].abs().max() <= TOL


def test_eager_attention_takes_the_additive_mask():
    model, _, _, batch = rollout("qwen2_5_vl", 2.0, (8, 12))
    model.set_attn_implementation("eager")
    ref = completion_logps(model, batch)
    got = completion_logps(model, batch, share_prefix=True)
    assert (got - ref)[batch.completion_mask.bool()].abs().max() <= TOL


def test_attention_without_4d_masks_runs_the_log_prob_forwards_row_by_row(monkeypatch, caplog):
    """flash attention takes no 4-D mask: the log-prob forwards then run unshared (said once), still exact."""
    import timegrpo.rollout as rollout_module

    model, _, _, batch = rollout("qwen2_5_vl", 2.0, (8, 12))
    calls = []
    monkeypatch.setattr(rollout_module, "packed_forward_supported", lambda m: False)
    monkeypatch.setattr(rollout_module, "pack", lambda *a, **k: calls.append(a))
    rollout_module._warned_unshared.clear()
    with caplog.at_level("WARNING", logger="timegrpo.rollout"):
        got = completion_logps(model, batch, share_prefix=True)
        completion_logps(model, batch, share_prefix=True)
    assert not calls and torch.equal(got, completion_logps(model, batch))
    assert sum("takes no 4-D attention mask" in r.message for r in caplog.records) == 1
