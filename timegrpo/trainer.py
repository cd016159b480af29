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
from dataclasses import dataclass, replace
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
from timegrpo.models.vision import VisionCallCounter, encode_videos
from timegrpo.parsing import parse_answer
from timegrpo.rewards import RewardSet
from timegrpo.rollout import RolloutBatch, SamplingParams, completion_logps, generate
from timegrpo.spans import temporal_iou

logger = logging.getLogger(__name__)


def make_accelerator(**kwargs: Any) -> Any:
    """An ``accelerate.Accelerator`` that also forms a process group on CPU-only machines.

    Accelerate only uses gloo on CPU when told it runs on CPU: without ``cpu=True``, ``torchrun
    --nproc_per_node 2`` on a machine with no GPU gives two independent single-process runs. So ``cpu``
    defaults to "no CUDA device" here.
    """
    from accelerate import Accelerator

    kwargs.setdefault("cpu", not torch.cuda.is_available())
    return Accelerator(**kwargs)


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
    teacher_logps: torch.Tensor | None = None  # (N, Lc), on-policy distillation


class GRPOTrainer:
    """Video-native GRPO on Accelerate. :func:`timegrpo.train.build_trainer` builds one from a recipe; tests and
    the demo pass the parts (model, processor, samples, frame source) themselves."""

    def __init__(self, cfg: Any, model: nn.Module, processor: Any, train_samples: Sequence[Sample],
                 videos: VideoSource, *, accelerator: Any = None,
                 reward_funcs: Sequence[Any] | None = None, teacher: nn.Module | None = None) -> None:
        self.cfg = cfg
        t = cfg.train
        if t.use_vllm:
            raise NotImplementedError("train.use_vllm: vLLM rollouts are not available in this version; set "
                                      "use_vllm: false (rollouts then use HF generate with cached vision features)")
        self.accelerator = accelerator or make_accelerator(gradient_accumulation_steps=t.gradient_accumulation_steps)
        self.processor = processor
        self.samples = list(train_samples)
        self.videos = videos
        weights = list(t.reward_weights) if t.reward_weights else [1.0] * len(t.reward_funcs)
        if len(weights) != len(t.reward_funcs):
            raise ValueError(f"reward_weights has {len(weights)} values for {len(t.reward_funcs)} "
                             f"reward_funcs ({', '.join(map(str, t.reward_funcs))})")
        self.rewards = RewardSet(list(reward_funcs) if reward_funcs is not None
                                 else list(zip(t.reward_funcs, weights, strict=True)))
        self.loss_settings = LossSettings.from_recipe(cfg)
        self.sampling = SamplingParams(
            num_generations=t.num_generations, max_completion_length=t.max_completion_length,
            temperature=t.temperature, top_p=t.top_p, top_k=t.top_k or 0,
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
        _deepspeed_clipping(self.accelerator, t.max_grad_norm)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.teacher = teacher
        for frozen in (self.reference, self.teacher):
            if frozen is not None:
                frozen.to(self.accelerator.device).eval().requires_grad_(False)
        self.vision_counter = VisionCallCounter(self.model)
        self.state = {"step": 0}
        self.accelerator.register_for_checkpointing(_StateHolder(self.state))
        self.output_dir = Path(t.output_dir)
        self.history: list[dict[str, float]] = []
        self._last_completions: list[dict[str, Any]] = []
        self._order: tuple[int, list[int]] = (-1, [])  # (epoch, permutation) of the data order

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
        if not self.cfg.train.shuffle_dataset:
            return pos
        if self._order[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.train.seed * 7919 + epoch)
            self._order = (epoch, torch.randperm(n, generator=g).tolist())
        return self._order[1][pos]

    # ------------------------------------------------------------------------------------------ rollouts
    def score(self, completions: list[str], samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, float]]:
        """Total rewards ``(N,)`` (weighted, None skipped as in TRL) and each component's mean/std."""
        breakdown = self.rewards(completions, **reward_columns(samples, self.sampling.num_generations))
        metrics: dict[str, float] = {}
        for key, values in breakdown.per_func.items():
            v = torch.tensor([float("nan") if x is None else float(x) for x in values])
            metrics[f"rewards/{key}/mean"] = float(torch.nanmean(v))
            metrics[f"rewards/{key}/std"] = float(_nanstd(v))
        return torch.tensor(breakdown.total), metrics

    def rollout(self, samples: Sequence[Sample], seed: int) -> tuple[MicroBatch, torch.Tensor, dict[str, float]]:
        """Sample and score one micro-batch, with old/reference/teacher log-probs (no gradients).

        Returns the micro-batch (advantages still empty: they are computed over the whole step), its total
        rewards ``(N,)`` and its metrics.
        """
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
        rewards, metrics = self.score(batch.completions, samples)
        mask = batch.completion_mask.clone()
        if t.mask_truncated_completions:
            mask[batch.truncated.to(mask.device)] = 0
        old = completion_logps(self.model, batch, temperature=t.temperature) if t.num_iterations > 1 else None
        ref = teacher = None
        if t.beta != 0:
            with reference_context(self.model, self.reference) as ref_model:
                ref = completion_logps(ref_model, batch, temperature=t.temperature)
        if self.teacher is not None:  # the teacher has its own vision tower: encode once for it too
            feats = encode_videos(self.teacher, inputs["pixel_values_videos"], inputs["video_grid_thw"])
            teacher = completion_logps(self.teacher, replace(batch, features=feats), temperature=t.temperature)
        metrics.update(self._rollout_metrics(batch, samples, rewards))
        if t.log_completions:
            self._last_completions = [
                {"qid": samples[i // batch.num_generations].qid, "completion": c, "reward": float(r)}
                for i, (c, r) in enumerate(zip(batch.completions, rewards.tolist(), strict=True))]
        mb = MicroBatch(batch, torch.empty(0), old, ref, mask.to(device), teacher)
        return mb, rewards, metrics

    def _rollout_metrics(self, batch: RolloutBatch, samples: Sequence[Sample], rewards: torch.Tensor
                         ) -> dict[str, float]:
        g = batch.num_generations
        ious = [temporal_iou(parse_answer(text, samples[i // g].duration), samples[i // g].windows)
                for i, text in enumerate(batch.completions)]
        lengths = batch.completion_mask.sum(1).float()
        return {
            "reward": float(rewards.mean()),
            "reward_std": float(_nanstd(rewards)),
            "iou": float(torch.tensor(ious).mean()),
            "completions/mean_length": float(lengths.mean()),
            "completions/clipped_ratio": float(batch.truncated.float().mean()),
        }

    def advantages(self, local_rewards: torch.Tensor) -> torch.Tensor:
        """Advantages ``(n_local,)`` of this process's rewards of the step.

        The estimator sees the rewards of every process (gathered in rank order), so ``scale_rewards: batch``
        divides by the std of the whole step as in TRL; groups never straddle processes, so group statistics
        are unchanged. This process's slice is returned.
        """
        t = self.cfg.train
        gathered = self.accelerator.gather(local_rewards.to(self.accelerator.device)).cpu()
        adv = ADVANTAGES.get(t.advantage_estimator)(
            gathered, t.num_generations, scale_rewards=t.scale_rewards, std_eps=t.advantage_std_eps,
            unbiased_std=t.advantage_unbiased_std)
        n = local_rewards.numel()
        rank = self.accelerator.process_index
        return adv[rank * n:(rank + 1) * n]

    # -------------------------------------------------------------------------------------------- a step
    def train_step(self) -> dict[str, float]:
        """One rollout round: ``gradient_accumulation_steps`` micro-batches, then ``num_iterations`` optimiser
        steps over them; returns the round's metrics."""
        t = self.cfg.train
        step = self.state["step"]
        t0 = time.perf_counter()
        videos0 = self.vision_counter.videos
        buffer, rewards, logs = [], [], []
        step_positions = self.step_positions(step)
        for positions in step_positions:
            samples = [self.samples[i] for i in positions]
            mb, r, m = self.rollout(samples, rollout_seed(t.seed, step, positions[0]))
            buffer.append(mb)
            rewards.append(r)
            logs.append(m)
        all_rewards = torch.cat(rewards)
        adv = self.advantages(all_rewards).split([r.numel() for r in rewards])
        for mb, a in zip(buffer, adv, strict=True):
            mb.advantages = a.to(self.accelerator.device)
        zero_std = zero_variance_share(all_rewards, t.num_generations)
        tokens = self._step_tokens(buffer)
        t_rollout = time.perf_counter() - t0
        loss_logs = []
        for _ in range(t.num_iterations):
            for mb in buffer:
                loss_logs.append(self._backward(mb, tokens))
        self.state["step"] = step + 1
        metrics = self._reduce({**_mean_dicts(logs + loss_logs), "frac_reward_zero_std": zero_std}, "mean")
        metrics.update(self._reduce({"vision_tower_calls": self.vision_counter.videos - videos0,
                                     "prompts": sum(len(p) for p in step_positions)}, "sum"))
        metrics.update(step=step + 1, learning_rate=self.scheduler.get_last_lr()[0], step_time=time.perf_counter() - t0, rollout_time=t_rollout)
        return metrics

    def _reduce(self, metrics: dict[str, float], reduction: str) -> dict[str, float]:
        """Metrics over all processes (every process logs the same keys, in sorted order)."""
        if self.accelerator.num_processes == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], device=self.accelerator.device)
        values = self.accelerator.reduce(values, reduction=reduction)
        return dict(zip(keys, values.tolist(), strict=True))

    def _backward(self, mb: MicroBatch, tokens: float) -> dict[str, float]:
        """Loss, backward and (on the last micro-batch of an accumulation) clip + optimiser step."""
        t = self.cfg.train
        with self.accelerator.accumulate(self.model):
            logps = completion_logps(self.model, mb.rollout, temperature=t.temperature, with_grad=True)
            inputs = PolicyLossInputs(logps=logps, mask=mb.mask, advantages=mb.advantages,
                                      old_logps=mb.old_logps, ref_logps=mb.ref_logps,
                                      teacher_logps=mb.teacher_logps)
            out = compute_policy_loss(inputs, self.loss_settings, tokens_per_micro_batch=tokens)
            self.accelerator.backward(out.loss)
            log = {"loss": float(out.loss.detach()), **{k: float(v) for k, v in out.metrics.items()}}
            if self.accelerator.sync_gradients and t.max_grad_norm:
                norm = self.accelerator.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
                if norm is not None:
                    log["grad_norm"] = float(norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        return log

    def _step_tokens(self, buffer: list[MicroBatch]) -> float:
        """The ``dapo`` normaliser: completion tokens of the whole step over all processes, per micro-batch."""
        local = torch.tensor(float(sum(mb.mask.sum() for mb in buffer)), device=self.accelerator.device)
        total = float(self.accelerator.reduce(local, reduction="sum"))
        return dapo_tokens_per_micro_batch(total, self.accelerator.num_processes,
                                           self.cfg.train.gradient_accumulation_steps)

    # ----------------------------------------------------------------------------------------- the loop
    def train(self, on_step: Callable[[dict[str, float]], None] | None = None,
              max_seconds: float | None = None, progress: bool = True) -> list[dict[str, float]]:
        """Run until ``total_steps`` (or ``max_seconds`` of wall time, checked after each step on every
        process alike); log every ``logging_steps``, checkpoint every ``save_steps`` and at the end."""
        from tqdm.auto import tqdm

        t = self.cfg.train
        bar = tqdm(total=self.total_steps, initial=self.state["step"], desc="grpo",
                   disable=not (progress and self.accelerator.is_main_process))
        t0 = time.perf_counter()
        while self.state["step"] < self.total_steps:
            if max_seconds is not None and self._elapsed(t0) >= max_seconds:
                break
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

    def _elapsed(self, t0: float) -> float:
        elapsed = torch.tensor(time.perf_counter() - t0, device=self.accelerator.device)
        return float(self.accelerator.reduce(elapsed, reduction="max"))

    def log(self, metrics: dict[str, float]) -> None:
        """Append to ``output_dir/metrics.jsonl`` (main process) and to the Accelerate trackers (wandb)."""
        if not self.accelerator.is_main_process:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if self.cfg.train.log_completions:
            with open(self.output_dir / "completions.jsonl", "a") as f:
                for row in self._last_completions:
                    f.write(json.dumps({"step": int(metrics["step"]), **row}) + "\n")
        if self.accelerator.trackers:
            self.accelerator.log(metrics, step=int(metrics["step"]))

    # ------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """``output_dir/checkpoint-STEP``: Accelerate state (model, optimizer, scheduler, RNG, step) under
        ``state/`` for exact resume, and a ``from_pretrained``-loadable model + processor at the top."""
        path = self.output_dir / f"checkpoint-{self.state['step']}"
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(path / "state"))
        state_dict = self.accelerator.get_state_dict(self.model)  # a collective under ZeRO-3
        if self.accelerator.is_main_process:
            _save_pretrained(self.accelerator.unwrap_model(self.model), path, state_dict)
            self.processor.save_pretrained(path)
            self._rotate_checkpoints()
        self.accelerator.wait_for_everyone()
        return path

    def _rotate_checkpoints(self) -> None:
        """Delete the oldest ``checkpoint-N`` folders beyond ``save_total_limit``."""
        import shutil

        limit = self.cfg.train.save_total_limit
        if not limit:
            return
        found = sorted(self.output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        for old in found[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, RNG and the step counter from a :meth:`save_checkpoint` folder."""
        state = Path(path) / "state"
        if not state.is_dir():
            raise FileNotFoundError(f"{path} is not a timegrpo checkpoint (no state/ folder): pass an "
                                    "output_dir/checkpoint-N folder written by a previous run")
        self.accelerator.load_state(str(state))


def _save_pretrained(model: nn.Module, path: Path, state_dict: dict[str, Any]) -> None:
    """Save a ``from_pretrained``-loadable copy; a LoRA policy is saved with its adapter merged."""
    if hasattr(model, "merge_and_unload"):
        import copy

        merged = copy.deepcopy(model)
        merged.load_state_dict(state_dict)
        merged.merge_and_unload().save_pretrained(path)
        return
    unwrap(model).save_pretrained(path, state_dict=state_dict)


def _deepspeed_clipping(accelerator: Any, max_grad_norm: float) -> None:
    """Under DeepSpeed only its own ``gradient_clipping`` clips (Accelerate's ``clip_grad_norm_`` then only
    reports the norm); an ``auto`` value would become 1.0, so write ``max_grad_norm`` into it before prepare."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None:
        plugin.deepspeed_config["gradient_clipping"] = float(max_grad_norm or 0.0)


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
