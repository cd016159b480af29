"""SFT warm start on the same data path as GRPO (``timegrpo sft``), for cold starts.

The target of each sample is its first ground-truth window written in the prompt template's answer format
(:func:`timegrpo.inputs.sft_target`), followed by the end-of-turn token; the loss is the mean negative
log-likelihood over target tokens of the micro-batch (prompt tokens carry no loss). It reuses the rollout
machinery: a target is a "completion" of the prompt, so SFT sees exactly the frames, the position ids and
the vision-tower reuse that GRPO sees.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from timegrpo.data.schema import Sample
from timegrpo.inputs import VideoSource, prompt_inputs, sft_target
from timegrpo.models.vision import encode_videos
from timegrpo.rollout import RolloutBatch, completion_logps


def target_batch(processor: Any, inputs: dict[str, Any], targets: Sequence[str], features: Any) -> RolloutBatch:
    """A one-completion-per-prompt :class:`RolloutBatch` whose completions are ``targets`` (+ EOS)."""
    tok = processor.tokenizer
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in targets]
    length = max(len(x) for x in ids)
    comp = torch.full((len(ids), length), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for i, x in enumerate(ids):
        comp[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    device = inputs["input_ids"].device
    return RolloutBatch(
        prompt_ids=inputs["input_ids"], prompt_mask=inputs["attention_mask"], completion_ids=comp.to(device),
        completion_mask=mask.to(device), truncated=torch.zeros(len(ids), dtype=torch.bool),
        completions=list(targets), video_index=list(range(len(ids))), prompt_inputs=inputs, features=features,
        num_generations=1,
    )


def sft_loss(model: nn.Module, processor: Any, samples: Sequence[Sample], videos: VideoSource, template: str,
             *, target: str | None = None) -> torch.Tensor:
    """Mean NLL over the target tokens of ``samples`` (a scalar with grad)."""
    device = next(model.parameters()).device
    inputs = prompt_inputs(processor, samples, videos, template)
    inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
    feats = encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    batch = target_batch(processor, inputs, [sft_target(s, template, target) for s in samples], feats)
    logps = completion_logps(model, batch, with_grad=True)
    mask = batch.completion_mask.to(logps.dtype)
    return -(logps * mask).sum() / mask.sum().clamp(min=1)


def train_sft(model: nn.Module, processor: Any, samples: Sequence[Sample], videos: VideoSource, *,
              template: str = "think", learning_rate: float = 2e-3, batch_size: int = 16,
              max_steps: int = 100, max_seconds: float | None = None, seed: int = 0,
              weight_decay: float = 0.0, max_grad_norm: float = 1.0, target: str | None = None,
              gradient_accumulation_steps: int = 1, accelerator: Any = None,
              on_step: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """SFT with AdamW at a constant learning rate for ``max_steps`` optimiser steps or ``max_seconds``.

    ``batch_size`` prompts per process per micro-batch; batches come from a permutation seeded by
    ``(seed, epoch)``, each process taking its own slice, so runs are reproducible. Runs under Accelerate
    (DDP / DeepSpeed when launched with ``accelerate launch``). Returns the per-step logs (``step``, ``loss``,
    ``time``); ``max_seconds`` is checked after each step (all processes stop together).
    """
    from timegrpo.trainer import make_accelerator

    acc = accelerator or make_accelerator(gradient_accumulation_steps=gradient_accumulation_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    model, opt = acc.prepare(model, opt)
    n, per_micro = len(samples), batch_size * acc.num_processes
    per_epoch = max(1, math.ceil(n / per_micro))
    logs: list[dict[str, float]] = []
    t0 = time.perf_counter()
    model.train()
    micro = 0
    for step in range(max_steps):
        losses = []
        for _ in range(acc.gradient_accumulation_steps):
            epoch, k = divmod(micro, per_epoch)
            micro += 1
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).tolist()
            chunk = order[k * per_micro:(k + 1) * per_micro][acc.process_index::acc.num_processes]
            with acc.accumulate(model):
                loss = sft_loss(model, processor, [samples[i] for i in chunk], videos, template, target=target)
                acc.backward(loss)
                if acc.sync_gradients and max_grad_norm:
                    acc.clip_grad_norm_(model.parameters(), max_grad_norm)
                opt.step()
                opt.zero_grad()
            losses.append(float(loss.detach()))
        elapsed = float(acc.reduce(torch.tensor(time.perf_counter() - t0, device=acc.device), reduction="max"))
        log = {"step": step + 1, "loss": sum(losses) / len(losses), "time": elapsed}
        logs.append(log)
        if on_step is not None:
            on_step(log)
        if max_seconds is not None and elapsed >= max_seconds:
            break
    return logs
