"""The GRPO loop: rollout -> rewards -> advantages -> loss -> step, on Accelerate (DDP, DeepSpeed ZeRO-2/3).

Why our own loop: TRL's GRPOTrainer has no video path (no video columns, no ``pixel_values_videos`` in its loss
forward, vLLM gets images only). We keep TRL's reward protocol and TRL's config names where the meaning is
the same, and reuse TRL/transformers/accelerate pieces (``unwrap_model_for_generation``, schedulers,
``Accelerator.save_state``) instead of rewriting them. The maths lives in :mod:`timegrpo.algos` as registered
pure functions; this file never branches on a method name.

One optimiser step (``S = gradient_accumulation_steps`` micro-batches of ``P = per_device_train_batch_size``
prompts on each of ``W`` processes):

1. for each micro-batch: the vision tower runs once per prompt, ``G = num_generations`` completions are
   sampled, every reward function scores them (each component logged), advantages are computed within each
   prompt's group, and (when needed) old and reference log-probs are computed with the cached vision output;
2. ``num_iterations`` times: for each buffered micro-batch, the train forward (gradients through the
   merger when it trains), the policy loss, ``accelerator.backward``; then clip, step, schedule.

Rollouts are seeded by ``(seed, step, global position of the micro-batch's first prompt)``, so the same
prompts get the same completions whatever the number of processes or accumulation steps, and a resumed
run samples exactly what the uninterrupted run did (exact resume is also helped by Accelerate's RNG state).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from timegrpo.algos.advantages import ADVANTAGES, zero_variance_share
from timegrpo.algos.aggregate import dapo_tokens_per_micro_batch
from timegrpo.algos.losses import LossSettings, PolicyLossInputs, compute_policy_loss
from timegrpo.data.schema import Sample
from timegrpo.inputs import VideoSource, prompt_inputs, reward_columns
from timegrpo.models.loading import make_reference, reference_context, unwrap
from timegrpo.models.vision import VisionCallCounter
from timegrpo.rewards import get_reward
from timegrpo.rollout import RolloutBatch, SamplingParams, completion_logps, generate
from timegrpo.spans import parse_answer, temporal_iou

logger = logging.getLogger(__name__)


def combine_rewards(per_func: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Weighted sum over reward functions ``(N, F) -> (N,)``; None (NaN) entries are skipped, as in TRL.

    >>> combine_rewards(torch.tensor([[1.0, 0.5], [float("nan"), 1.0]]), [1.0, 2.0])
    tensor([2., 2.])
    """
    w = torch.as_tensor(list(weights), dtype=per_func.dtype)
    return (per_func * w).nansum(dim=1)


def rollout_seed(seed: int, step: int, position: int) -> int:
    """A seed for one micro-batch's sampling, independent of the process layout.

    >>> rollout_seed(0, 3, 5) == rollout_seed(0, 3, 5) != rollout_seed(0, 3, 6)
    True
    """
    return (seed * 1_000_003 + step * 10_007 + position) % (2**63 - 1)


@dataclass
class MicroBatch:
    """One micro-batch's rollouts and everything the loss needs from them."""

    rollout: RolloutBatch
    advantages: torch.Tensor  # (N,)
    old_logps: torch.Tensor | None  # (N, Lc)
    ref_logps: torch.Tensor | None  # (N, Lc)
    mask: torch.Tensor  # (N, Lc) completion mask, zeroed for masked truncated completions


class GRPOTrainer:
    """Video-native GRPO on Accelerate. Build it with :meth:`from_config` or pass the parts yourself."""

    def __init__(self, cfg: Any, model: nn.Module, processor: Any, train_samples: Sequence[Sample],
                 videos: VideoSource, *, accelerator: Any = None,
                 reward_funcs: Sequence[Callable[..., list[float | None]]] | None = None) -> None:
        from accelerate import Accelerator

        self.cfg = cfg
        t = cfg.train
        self.accelerator = accelerator or Accelerator(gradient_accumulation_steps=t.gradient_accumulation_steps)
        self.processor = processor
        self.samples = list(train_samples)
        self.videos = videos
        names = list(t.reward_funcs)
        self.reward_names = [n if isinstance(n, str) else getattr(n, "__name__", "reward") for n in names]
        self.reward_funcs = list(reward_funcs) if reward_funcs is not None else [get_reward(n) for n in names]
        self.reward_weights = list(t.reward_weights) if t.reward_weights else [1.0] * len(self.reward_funcs)
        if len(self.reward_weights) != len(self.reward_funcs):
            raise ValueError(f"reward_weights has {len(self.reward_weights)} values for "
                             f"{len(self.reward_funcs)} reward_funcs ({', '.join(self.reward_names)})")
        self.loss_settings = LossSettings(
            objective="clipped", loss_type=t.loss_type, epsilon=t.epsilon, epsilon_high=t.epsilon_high,
            beta=t.beta, kl_estimator=t.kl_estimator, max_completion_length=t.max_completion_length,
        )
        self.sampling = SamplingParams(
            num_generations=t.num_generations, max_completion_length=t.max_completion_length,
            min_completion_length=getattr(t, "min_completion_length", 0), temperature=t.temperature,
            top_p=t.top_p, top_k=t.top_k or 0,
        )
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameter: check freeze_vision_tower/train_merger/use_lora")
        optimizer = torch.optim.AdamW(params, lr=t.learning_rate, weight_decay=t.weight_decay,
                                      betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon)
        self.total_steps = self._total_steps()
        from transformers import get_scheduler

        scheduler = get_scheduler(t.lr_scheduler_type, optimizer,
                                  num_warmup_steps=math.ceil(t.warmup_ratio * self.total_steps * t.num_iterations),
                                  num_training_steps=self.total_steps * t.num_iterations)
        self.reference = make_reference(model, beta=t.beta, use_lora=cfg.model.use_lora)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        if self.reference is not None:
            self.reference = self.reference.to(self.accelerator.device)
        self.vision_counter = VisionCallCounter(self.model)
        self.state = {"step": 0}
        self.accelerator.register_for_checkpointing(_StateHolder(self.state))
        self.output_dir = Path(t.output_dir)
        self.history: list[dict[str, float]] = []

    # ----------------------------------------------------------------------------------------- data order
    @property
    def prompts_per_step(self) -> int:
        t = self.cfg.train
        return t.per_device_train_batch_size * t.gradient_accumulation_steps * self.accelerator.num_processes

    def _total_steps(self) -> int:
        t = self.cfg.train
        if t.max_steps and t.max_steps > 0:
            return t.max_steps
        return max(1, math.ceil(t.num_train_epochs * len(self.samples) / self.prompts_per_step))

    def step_positions(self, step: int) -> list[list[int]]:
        """Global sample positions of this process's micro-batches at optimiser ``step``.

        The epoch's order is a permutation seeded by ``(seed, epoch)``; a step takes the next
        ``prompts_per_step`` positions; micro-batch ``k`` of rank ``r`` takes a contiguous slice, so
        1 process x 2 accumulation and 2 processes x 1 accumulation see the same prompts in a step.
        """
        t = self.cfg.train
        n, per_step = len(self.samples), self.prompts_per_step
        start = step * per_step
        p, s, w, r = (t.per_device_train_batch_size, t.gradient_accumulation_steps,
                      self.accelerator.num_processes, self.accelerator.process_index)
        out = []
        for k in range(s):
            first = start + (k * w + r) * p
            out.append([self._sample_index(g, n) for g in range(first, first + p)])
        return out

    def _sample_index(self, global_pos: int, n: int) -> int:
        epoch, pos = divmod(global_pos, n)
        g = torch.Generator().manual_seed(self.cfg.train.seed * 7919 + epoch)
        return int(torch.randperm(n, generator=g)[pos])

    # ------------------------------------------------------------------------------------------ rollouts
    def score(self, completions: list[str], samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, float]]:
        """Rewards ``(N, F)`` of every function (NaN for None) and their logged means/stds."""
        cols = reward_columns(samples, self.sampling.num_generations)
        per_func = torch.full((len(completions), len(self.reward_funcs)), float("nan"))
        metrics: dict[str, float] = {}
        for j, (name, fn) in enumerate(zip(self.reward_names, self.reward_funcs, strict=True)):
            values = fn(completions, **cols)
            per_func[:, j] = torch.tensor([float("nan") if v is None else float(v) for v in values])
            metrics[f"rewards/{name}/mean"] = float(torch.nanmean(per_func[:, j]))
            metrics[f"rewards/{name}/std"] = float(_nanstd(per_func[:, j]))
        return per_func, metrics

    def rollout(self, samples: Sequence[Sample], seed: int) -> tuple[MicroBatch, dict[str, float]]:
        """Sample, score and prepare one micro-batch (no gradients)."""
        from trl.models.utils import unwrap_model_for_generation

        t = self.cfg.train
        device = self.accelerator.device
        inputs = prompt_inputs(self.processor, samples, self.videos, self.cfg.data.prompt_template)
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        torch.manual_seed(seed)
        with unwrap_model_for_generation(self.model, self.accelerator) as gen_model:
            was_training = gen_model.training
            gen_model.eval()
            batch = generate(gen_model, self.processor, inputs, self.sampling)
            gen_model.train(was_training)
        per_func, metrics = self.score(batch.completions, samples)
        rewards = combine_rewards(per_func, self.reward_weights)
        adv = ADVANTAGES.get(t.advantage_estimator)(rewards, t.num_generations, scale_rewards=t.scale_rewards)
        mask = batch.completion_mask.clone()
        if t.mask_truncated_completions:
            mask[batch.truncated.to(mask.device)] = 0
        old = completion_logps(self.model, batch, temperature=t.temperature) if t.num_iterations > 1 else None
        ref = None
        if t.beta != 0:
            with reference_context(self.model, self.reference) as ref_model:
                ref = completion_logps(ref_model, batch, temperature=t.temperature)
        metrics.update(self._rollout_metrics(batch, samples, rewards))
        metrics["frac_reward_zero_std"] = zero_variance_share(rewards, t.num_generations)
        return MicroBatch(batch, adv.to(device), old, ref, mask.to(device)), metrics

    def _rollout_metrics(self, batch: RolloutBatch, samples: Sequence[Sample], rewards: torch.Tensor
                         ) -> dict[str, float]:
        g = batch.num_generations
        ious = []
        for i, text in enumerate(batch.completions):
            s = samples[i // g]
            ious.append(temporal_iou(parse_answer(text, s.duration), s.windows))
        lengths = batch.completion_mask.sum(1).float()
        return {
            "reward": float(rewards.mean()),
            "reward_std": float(_nanstd(rewards)),
            "iou": float(torch.tensor(ious).mean()),
            "completions/mean_length": float(lengths.mean()),
            "completions/clipped_ratio": float(batch.truncated.float().mean()),
        }

    # -------------------------------------------------------------------------------------------- a step
    def train_step(self) -> dict[str, float]:
        """One optimiser step (``num_iterations`` steps when rollouts are reused); returns its metrics."""
        t = self.cfg.train
        step = self.state["step"]
        t0 = time.perf_counter()
        calls0 = self.vision_counter.videos
        buffer, logs = [], []
        for positions in self.step_positions(step):
            samples = [self.samples[i] for i in positions]
            mb, m = self.rollout(samples, rollout_seed(t.seed, step, positions[0]))
            buffer.append(mb)
            logs.append(m)
        tokens = self._dapo_tokens(buffer)
        t_rollout = time.perf_counter() - t0
        loss_logs = []
        for _ in range(t.num_iterations):
            for mb in buffer:
                with self.accelerator.accumulate(self.model):
                    out = self._loss(mb, tokens)
                    self.accelerator.backward(out.loss)
                    if self.accelerator.sync_gradients and t.max_grad_norm:
                        grad_norm = self.accelerator.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
                        loss_logs.append({"grad_norm": float(grad_norm)})
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad()
                loss_logs.append({"loss": float(out.loss.detach()),
                                  **{k: float(v) for k, v in out.metrics.items()}})
        self.state["step"] = step + 1
        metrics = _mean_dicts(logs + loss_logs)
        metrics.update(step=step + 1, learning_rate=self.scheduler.get_last_lr()[0],
                       step_time=time.perf_counter() - t0, rollout_time=t_rollout,
                       vision_tower_calls=self.vision_counter.videos - calls0)
        return metrics

    def _dapo_tokens(self, buffer: list[MicroBatch]) -> float | None:
        if self.cfg.train.loss_type != "dapo":
            return None
        local = torch.tensor(float(sum(mb.mask.sum() for mb in buffer)), device=self.accelerator.device)
        total = float(self.accelerator.reduce(local, reduction="sum"))
        return dapo_tokens_per_micro_batch(total, self.accelerator.num_processes,
                                           self.cfg.train.gradient_accumulation_steps)

    def _loss(self, mb: MicroBatch, tokens: float | None) -> Any:
        logps = completion_logps(self.model, mb.rollout, temperature=self.cfg.train.temperature, with_grad=True)
        inputs = PolicyLossInputs(logps=logps, mask=mb.mask, advantages=mb.advantages, old_logps=mb.old_logps,
                                  ref_logps=mb.ref_logps)
        return compute_policy_loss(inputs, self.loss_settings, tokens_per_micro_batch=tokens)

    # ----------------------------------------------------------------------------------------- the loop
    def train(self, on_step: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
        """Run until ``total_steps``; log every ``logging_steps``, checkpoint every ``save_steps``."""
        from tqdm.auto import tqdm

        t = self.cfg.train
        bar = tqdm(total=self.total_steps, initial=self.state["step"], desc="grpo",
                   disable=not self.accelerator.is_main_process)
        while self.state["step"] < self.total_steps:
            metrics = self.train_step()
            self.history.append(metrics)
            if on_step is not None:
                on_step(metrics)
            step = self.state["step"]
            if step % max(1, t.logging_steps) == 0 or step == self.total_steps:
                self.log(metrics)
            if t.save_steps and step % t.save_steps == 0 and step < self.total_steps:
                self.save_checkpoint()
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", iou=f"{metrics['iou']:.3f}")
        bar.close()
        self.save_checkpoint()
        return self.history

    def log(self, metrics: dict[str, float]) -> None:
        """Append to ``output_dir/metrics.jsonl`` (main process) and to the Accelerate trackers (wandb)."""
        if not self.accelerator.is_main_process:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.accelerator.trackers:
            self.accelerator.log(metrics, step=int(metrics["step"]))

    # ------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """``output_dir/checkpoint-STEP``: Accelerate state (model, optimizer, scheduler, RNG, step) under
        ``state/`` for exact resume, and a ``from_pretrained``-loadable model + processor at the top."""
        path = self.output_dir / f"checkpoint-{self.state['step']}"
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(path / "state"))
        if self.accelerator.is_main_process:
            unwrap(self.accelerator.unwrap_model(self.model)).save_pretrained(
                path, state_dict=self.accelerator.get_state_dict(self.model))
            self.processor.save_pretrained(path)
        self.accelerator.wait_for_everyone()
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, RNG and the step counter from a :meth:`save_checkpoint` folder."""
        state = Path(path) / "state"
        if not state.is_dir():
            raise FileNotFoundError(f"{path} is not a timegrpo checkpoint (no state/ folder): pass an "
                                    "output_dir/checkpoint-N folder written by a previous run")
        self.accelerator.load_state(str(state))


class _StateHolder:
    """Saves the trainer's counters with ``accelerator.save_state`` (``register_for_checkpointing``)."""

    def __init__(self, state: dict[str, int]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, int]:
        return dict(self.state)

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.state.update(d)


def _nanstd(x: torch.Tensor) -> torch.Tensor:
    x = x[~torch.isnan(x)]
    return x.std() if x.numel() > 1 else torch.tensor(0.0)


def _mean_dicts(dicts: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = {k for d in dicts for k in d}
    return {k: sum(d[k] for d in dicts if k in d) / sum(1 for d in dicts if k in d) for k in sorted(keys)}
