"""A tiny text Qwen2 causal LM and a tiny Qwen2 reward model, built offline with the tiny models' tokenizer."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory):
    """``(policy, rm_dir, tokenizer)``: a random Qwen2ForCausalLM (~70k parameters), a random
    Qwen2ForSequenceClassification (``num_labels=1``) saved with the tokenizer to ``rm_dir`` (a reward model given
    by path), and the tokenizer: the tiny models' byte-level BPE with the Qwen chat template."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

    from timegrpo.models.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    cfg = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    policy = Qwen2ForCausalLM(Qwen2Config(**cfg))
    rm_dir = tmp_path_factory.mktemp("rm") / "tiny-rm"
    Qwen2ForSequenceClassification(Qwen2Config(**cfg, num_labels=1)).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    return policy, rm_dir, tok
