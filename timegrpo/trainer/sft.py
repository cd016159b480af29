"""The SFT step on the shared loop (``timegrpo sft``): a supervised warm start on the same data path as GRPO.

The target of each sample is its first ground-truth window written in the prompt template's answer format
(:func:`timegrpo.prompts.sft_target`), followed by the end-of-turn token. The loss is the mean negative
log-likelihood over the counted tokens of the micro-batch: the target tokens (``completion_only_loss: true``),
or every text token of prompt and target (``false``; padding and video placeholders never count, as in TRL).
A target is the continuation of its prompt in a :class:`timegrpo.rollout.SequenceBatch`, so SFT sees exactly
the frames, the position ids and the vision-tower reuse that GRPO sees.

Everything else is the loop's (:class:`timegrpo.trainer.loop.TrainLoop` over the ``sft`` section): AdamW with
the section's betas, epsilon and weight decay, its scheduler and warm-up, clipping, accumulation, checkpoints
every ``save_steps`` with exact resume, ``metrics.jsonl`` every ``logging_steps``. Epochs are cut as SFT
usually cuts them: each epoch (a permutation seeded by ``(seed, epoch)``) starts a new micro-batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from timegrpo.data.schema import Sample
from timegrpo.data.source import FrameTransform, VideoSource
from timegrpo.models.vision import VideoFeatures, encode_videos
from timegrpo.prompts import prompt_inputs, sft_target
from timegrpo.rollout import SequenceBatch, completion_logps, sequence_logps
from timegrpo.trainer.loop import TrainLoop, mean_dicts
from timegrpo.trainer.prefetch import InputPrefetch


def target_batch(tokenizer: Any, inputs: dict[str, Any], targets: Sequence[str],
                 features: VideoFeatures) -> SequenceBatch:
    """One row per prompt of ``inputs`` whose continuation is its target (tokens + EOS, right padded)."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in targets]
    length = max(len(x) for x in ids)
    comp = torch.full((len(ids), length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), length), dtype=torch.long)
    for i, x in enumerate(ids):
        comp[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    device = inputs["input_ids"].device
    return SequenceBatch(
        prompt_ids=inputs["input_ids"], prompt_mask=inputs["attention_mask"], completion_ids=comp.to(device),
        completion_mask=mask.to(device), video_index=list(range(len(ids))), prompt_inputs=inputs,
        features=features, num_generations=1,
    )


class SFTTrainer(TrainLoop):
    """SFT over the recipe's ``sft`` section. ``target`` overrides the template's target string
    (:func:`timegrpo.prompts.sft_target`)."""

    desc = "sft"
    postfix = ("loss",)

    def __init__(self, cfg: Any, model: nn.Module, processor: Any, train_samples: Sequence[Sample],
                 videos: VideoSource, *, accelerator: Any = None, target: str | None = None,
                 frame_transform: FrameTransform | None = None) -> None:
        self.cfg = cfg
        self.videos = videos
        self.frame_transform = frame_transform
        self.template = cfg.data.prompt_template
        self.target = target
        super().__init__(cfg.sft, model, processor, train_samples, accelerator=accelerator, epoch_aligned=True)
        self.inputs = InputPrefetch(self, self.template, cfg.data.num_workers, cfg.data.on_bad, cfg.data.train_file)
        self.bad_videos = self.inputs.bad_videos
        self.model.train()

    def loss(self, samples: Sequence[Sample], inputs: dict[str, Any] | None = None) -> torch.Tensor:
        """Mean NLL over the counted tokens of ``samples`` (a scalar with grad); ``inputs``: their
        :func:`prompt_inputs` when already made (prefetched), else they are made here."""
        device = self.accelerator.device
        if inputs is None:
            inputs = prompt_inputs(self.processor, samples, self.step_videos(self.state["step"]), self.template)
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        feats = encode_videos(self.model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
        targets = [sft_target(s, self.template, self.target) for s in samples]
        batch = target_batch(self.processor.tokenizer, inputs, targets, feats)
        if self.args.completion_only_loss:
            logps, mask = completion_logps(self.model, batch, with_grad=True), batch.completion_mask
        else:
            logps, mask = sequence_logps(self.model, batch, with_grad=True)
        mask = mask.to(logps.dtype)
        return -(logps * mask).sum() / mask.sum().clamp(min=1)

    def train_step(self) -> dict[str, float]:
        """``gradient_accumulation_steps`` micro-batches and one optimiser step; returns the step's metrics
        (``loss`` is the mean of the micro-batches' losses)."""
        step = self.state["step"]
        t0 = time.perf_counter()
        logs = []
        for k in range(len(self.step_positions(step))):
            samples, inputs = self.inputs.get(step, k)  # prefetched (data.num_workers)
            with self.accelerator.accumulate(self.model):
                loss = self.loss(samples, inputs)
                log = self.optimizer_step(loss)
            logs.append({"loss": float(loss.detach()), **log})
        self.state["step"] = step + 1
        metrics = self.reduce(mean_dicts(logs), "mean")
        metrics.update(step=step + 1, learning_rate=self.scheduler.get_last_lr()[0],
                       step_time=time.perf_counter() - t0)
        return metrics
