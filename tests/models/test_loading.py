"""Policy preparation: what trains, LoRA on the language model only, the adapter-disabled reference."""

from __future__ import annotations

import copy

import pytest
import torch

from timegrpo.models.loading import make_reference, prepare_policy, reference_context, vision_tower
from timegrpo.models.tiny import build_tiny_vlm, save_tiny_vlm


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_default_trains_llm_and_merger_freezes_vision_blocks():
    model, _ = build_tiny_vlm("qwen2_5_vl")
    model = prepare_policy(model)
    names = trainable(model)
    assert any(n.startswith("model.language_model.") for n in names) and "lm_head.weight" in names
    assert any(".visual.merger." in n for n in names)
    assert not any(".visual." in n and ".merger." not in n for n in names)
    frozen_merger = prepare_policy(build_tiny_vlm("qwen2_5_vl")[0], train_merger=False)
    assert not any(".visual." in n for n in trainable(frozen_merger))
    whole = prepare_policy(build_tiny_vlm("qwen2_5_vl")[0], freeze_vision_tower=False)
    assert any(".visual.blocks." in n for n in trainable(whole))


def test_lora_adapts_language_model_only_and_reference_is_the_adapter_disabled_policy():
    model, processor = build_tiny_vlm("qwen2_5_vl", seed=0)
    base_logits_model, _ = build_tiny_vlm("qwen2_5_vl", seed=0)
    policy = prepare_policy(model, use_lora=True, lora_kwargs={"r": 4, "alpha": 8, "dropout": 0.0})
    names = trainable(policy)
    lora = {n for n in names if "lora_" in n}
    assert lora and all(".language_model." in n for n in lora)
    assert not any("lora_" in n for n, _ in vision_tower(policy).named_parameters())
    assert any(".merger." in n for n in names) and not (names - lora - {n for n in names if ".merger." in n})
    assert make_reference(policy, beta=0.04, use_lora=True) is None
    ids = processor.tokenizer("<answer>1.00 to 2.00</answer>", return_tensors="pt")["input_ids"]
    with torch.no_grad():  # make the adapter non-zero so that disabling it matters
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.add_(0.5)
        adapted = policy(input_ids=ids).logits
        with reference_context(policy, None) as ref:
            disabled = ref(input_ids=ids).logits
        base = base_logits_model(input_ids=ids).logits
    torch.testing.assert_close(disabled, base)
    assert not torch.allclose(adapted, base)


def test_separate_reference_only_when_beta_nonzero(tmp_path):
    """beta 0: no reference. beta > 0: a frozen copy with its own storage that a policy step leaves alone.
    LoRA: no copy (the adapter-disabled policy is the reference, tested above)."""
    model, processor = build_tiny_vlm("qwen2_vl", seed=0)
    policy = prepare_policy(model)
    assert make_reference(policy, beta=0.0, use_lora=False) is None
    assert make_reference(policy, beta=0.04, use_lora=True) is None
    before = trainable(policy)
    ref = make_reference(policy, beta=0.04, use_lora=False)
    assert ref is not None and ref is not policy and not ref.training
    assert trainable(policy) == before  # freezing the copy leaves the policy's trainable set as it was
    assert not any(p.requires_grad for p in ref.parameters())
    ours, theirs = dict(policy.named_parameters()), dict(ref.named_parameters())
    assert ours.keys() == theirs.keys()
    for name, p in ours.items():
        assert torch.equal(p, theirs[name]), name
        assert p.untyped_storage().data_ptr() != theirs[name].untyped_storage().data_ptr(), name
    with reference_context(policy, ref) as used:
        assert used is ref
    snapshot = {n: p.detach().clone() for n, p in theirs.items()}
    ids = processor.tokenizer("<answer>1.00 to 2.00</answer>", return_tensors="pt")["input_ids"]
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.1)
    policy(input_ids=ids).logits.square().mean().backward()
    opt.step()
    assert not torch.equal(ours["lm_head.weight"], snapshot["lm_head.weight"])  # the policy moved
    for name, p in theirs.items():
        assert torch.equal(p, snapshot[name]) and p.grad is None, name
    with torch.no_grad():
        assert not torch.allclose(ref(input_ids=ids).logits, policy(input_ids=ids).logits)


def test_load_policy_from_a_folder_with_gradient_checkpointing(tmp_path):
    from timegrpo.models.loading import load_policy

    path = save_tiny_vlm("qwen3_vl", tmp_path / "m")
    model, processor = load_policy(str(path), dtype="float32", gradient_checkpointing=True)
    assert getattr(model, "is_activation_checkpointing", None) and model.config.model_type == "qwen3_vl"
    assert processor.tokenizer.eos_token == "<|im_end|>"


def test_lora_reference_is_the_base_model_merger_included():
    """With LoRA and train_merger, the merger trains as one of the adapter's modules_to_save: the policy's
    merger moves, the adapter-disabled reference keeps the base merger."""
    model, _ = build_tiny_vlm("qwen2_5_vl", seed=0)
    base_merger = copy.deepcopy(vision_tower(model).merger)
    policy = prepare_policy(model, use_lora=True, lora_kwargs={"r": 4, "alpha": 8, "dropout": 0.0})
    merger = vision_tower(policy).merger
    trained = [p for p in merger.parameters() if p.requires_grad]
    assert trained
    with torch.no_grad():
        for p in trained:
            p.add_(0.5)
    x = torch.randn(8, base_merger.ln_q.weight.shape[0])
    with torch.no_grad():
        expected = base_merger(x)
        assert not torch.allclose(merger(x), expected)  # the policy's merger moved
        with reference_context(policy, None):
            torch.testing.assert_close(merger(x), expected, rtol=0, atol=0)  # the reference's did not
    frozen_originals = [p for n, p in policy.named_parameters() if ".merger.original_module." in n]
    assert frozen_originals and not any(p.requires_grad for p in frozen_originals)


def test_merged_lora_state_dict_is_peft_merge_with_the_plain_model_keys():
    """What a LoRA checkpoint holds: peft's merge_and_unload of the adapter (and the trained merger), under the
    keys of the plain transformers model, computed from the state dict without copying the model."""
    from timegrpo.models.loading import merged_lora_state_dict

    model, _ = build_tiny_vlm("qwen2_5_vl", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain_keys = set(before)
    policy = prepare_policy(model, use_lora=True, lora_kwargs={"r": 4, "alpha": 8, "dropout": 0.0})
    with torch.no_grad():
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    merged = merged_lora_state_dict(policy, policy.state_dict())
    assert set(merged) == plain_keys
    assert merged_lora_state_dict(policy, None) is None  # a process without the weights only joins the gathers
    reference = copy.deepcopy(policy).merge_and_unload().state_dict()
    for key, value in reference.items():
        torch.testing.assert_close(merged[key], value, rtol=0, atol=1e-7, msg=key)
    touched = [k for k in plain_keys if not torch.equal(merged[k], before[k])]
    assert any(".merger." in k for k in touched) and any("q_proj.weight" in k for k in touched)


def test_a_sharded_policy_gets_a_freshly_loaded_reference():
    """Under ZeRO-3 the policy's parameters are slices (DeepSpeed marks them with ``ds_id``): a copy of them is
    no model, so the reference comes from ``load`` (a fresh load of the checkpoint), and without it the
    trainer is told what to pass."""
    policy = prepare_policy(build_tiny_vlm("qwen2_5_vl", seed=0)[0])
    next(policy.parameters()).ds_id = 0  # what deepspeed.zero.Init leaves on a partitioned parameter
    with pytest.raises(ValueError, match="pass load_reference"):
        make_reference(policy, beta=0.04, use_lora=False)
    fresh = build_tiny_vlm("qwen2_5_vl", seed=0)[0].train()
    ref = make_reference(policy, beta=0.04, use_lora=False, load=lambda: fresh)
    assert ref is fresh and not ref.training and not any(p.requires_grad for p in ref.parameters())
    assert make_reference(policy, beta=0.0, use_lora=False, load=lambda: fresh) is None
