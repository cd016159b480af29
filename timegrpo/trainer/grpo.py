"""The GRPO / Video-OPD step on the shared loop: rollout -> rewards -> advantages -> loss -> step.

Why our own trainer: TRL's GRPOTrainer has no video path (no video columns, no ``pixel_values_videos`` in its
loss forward, vLLM gets images only). We keep TRL's reward protocol and TRL's config names where the meaning
is the same, and reuse TRL/transformers/accelerate pieces (``unwrap_model_for_generation``, schedulers,
``Accelerator.save_state``) instead of rewriting them. The maths lives in :mod:`timegrpo.algos` as registered
pure functions; this file never branches on a method name. Data order, accumulation, checkpoints and logging
are the loop's (:mod:`timegrpo.trainer.loop`).

One optimiser step (``S = gradient_accumulation_steps`` micro-batches of ``P = per_device_train_batch_size``
prompts on each of ``W`` processes):

1. for each micro-batch (:meth:`GRPOTrainer.rollout`): the vision tower runs once per prompt,
   ``G = num_generations`` completions are sampled, every reward function scores them with TRL's full call
   (:meth:`GRPOTrainer.score`; each component logged, with the IoU, the ``log_extra`` columns and the ``log_metric``
   scalars the rewards report), and (when needed) old, reference and teacher log-probs are computed with
   the cached vision output: a :class:`ScoredRollout`. With ``train.dynamic_sampling`` this is :class:`timegrpo.trainer.dynamic.DynamicSampler`'s: whole steps'
   worth of prompts are drawn until every group trained on has reward variance (DAPO);
2. advantages are computed over the whole step, within each prompt's group, and each rollout becomes a
   complete :class:`MicroBatch`;
3. ``num_iterations`` times: for each micro-batch, the train forward (gradients through the merger when it
   trains), the policy loss, ``accelerator.backward``; then clip, step, schedule.

The micro-batches' inputs (frames, processor tensors) are prepared ahead by ``data.num_workers`` threads
(:mod:`timegrpo.trainer.prefetch`); ``train.logprob_batch_size`` chunks the rows of every log-prob forward;
``train.share_prompt_prefix`` computes each prompt once for its G completions in generation and in every log-prob
forward (:mod:`timegrpo.models.prefix`; same results, less work). The
step's metrics are combined over micro-batches, iterations and processes as :mod:`timegrpo.trainer.metrics`
says (means over all completions, token means, min/max, sums).

Rollouts are seeded by ``(seed, step, global position of the micro-batch's first prompt)``, so the same
prompts get the same completions whatever the number of processes or accumulation steps, and a resumed
run samples exactly what the uninterrupted run did (exact resume is also helped by Accelerate's RNG state).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from timegrpo.algos.advantages import ADVANTAGES, zero_variance_share
from timegrpo.algos.aggregate import dapo_tokens_per_micro_batch
from timegrpo.algos.losses import LossSettings, PolicyLossInputs, compute_policy_loss
from timegrpo.data.schema import Sample
from timegrpo.data.source import FrameTransform, VideoSource
from timegrpo.models.loading import make_reference, reference_context
from timegrpo.models.vision import VisionCallCounter, encode_videos
from timegrpo.prompts import prompt_inputs
from timegrpo.rewards import RewardBreakdown, RewardError, RewardSet
from timegrpo.rewards.columns import reward_call, trainer_state
from timegrpo.rollout import RolloutBatch, SamplingParams, completion_logps, generate
from timegrpo.trainer.dynamic import DynamicSampler
from timegrpo.trainer.loop import TrainLoop, train_mode
from timegrpo.trainer.metrics import RolloutLog, logged_metrics, loss_metrics, rollout_metrics
from timegrpo.trainer.prefetch import InputPrefetch


def rollout_seed(seed: int, step: int, position: int) -> int:
    """A seed for one micro-batch's sampling, independent of the process layout.

    >>> rollout_seed(0, 3, 5) == rollout_seed(0, 3, 5) != rollout_seed(0, 3, 6)
    True
    """
    return (seed * 1_000_003 + step * 10_007 + position) % (2**63 - 1)


@dataclass(frozen=True)
class ScoredRollout:
    """One micro-batch's sampled completions, scored, with the no-grad log-probs the loss needs."""

    batch: RolloutBatch
    rewards: torch.Tensor  # (N,) weighted totals
    mask: torch.Tensor  # (N, Lc) completion mask, zeroed for masked truncated completions
    old_logps: torch.Tensor | None  # (N, Lc), when num_iterations > 1
    ref_logps: torch.Tensor | None  # (N, Lc), when beta != 0
    teacher_logps: torch.Tensor | None  # (N, Lc), on-policy distillation
    log: RolloutLog | None  # what its drawing adds to the step's metrics (None: assembled from drawn groups)
    #: ``completions.jsonl`` rows (qid, completion, reward, ``log_extra`` columns), with ``log_completions``
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class MicroBatch:
    """A scored rollout with its advantages ``(N,)``: everything the loss needs."""

    rollout: ScoredRollout
    advantages: torch.Tensor

    def loss_inputs(self, logps: torch.Tensor) -> PolicyLossInputs:
        r = self.rollout
        return PolicyLossInputs(logps=logps, mask=r.mask, advantages=self.advantages, old_logps=r.old_logps,
                                ref_logps=r.ref_logps, teacher_logps=r.teacher_logps)


def sampling_params(t: Any) -> SamplingParams:
    """The rollout sampling of an :class:`timegrpo.config.RLConfig` section."""
    return SamplingParams(num_generations=t.num_generations, max_completion_length=t.max_completion_length,
                          temperature=t.temperature, top_p=t.top_p, top_k=t.top_k or 0)


def reward_set(t: Any, reward_funcs: Sequence[Any] | None = None) -> RewardSet:
    """The section's ``reward_funcs`` with their ``reward_weights`` (or ``reward_funcs`` given directly)."""
    if reward_funcs is not None:
        return RewardSet(list(reward_funcs))
    weights = list(t.reward_weights) if t.reward_weights else [1.0] * len(t.reward_funcs)
    if len(weights) != len(t.reward_funcs):
        raise ValueError(f"reward_weights has {len(weights)} values for {len(t.reward_funcs)} "
                         f"reward_funcs ({', '.join(map(str, t.reward_funcs))})")
    return RewardSet(list(zip(t.reward_funcs, weights, strict=True)))


class GRPOTrainer(TrainLoop):
    """Video-native GRPO (and Video-OPD with a ``teacher``) on the shared loop.
    :func:`timegrpo.trainer.build.build_trainer` builds one from a recipe; tests and the demo pass the parts
    (model, processor, samples, frame source) themselves."""

    desc = "grpo"
    postfix = ("reward", "iou")

    def __init__(self, cfg: Any, model: nn.Module, processor: Any, train_samples: Sequence[Sample],
                 videos: VideoSource, *, accelerator: Any = None,
                 reward_funcs: Sequence[Any] | None = None, teacher: nn.Module | None = None,
                 load_reference: Callable[[], nn.Module] | None = None,
                 frame_transform: FrameTransform | None = None) -> None:
        t = cfg.train
        self.cfg = cfg
        self.videos = videos
        self.frame_transform = frame_transform
        self.rewards = reward_set(t, reward_funcs)
        self.loss_settings = LossSettings.from_recipe(cfg)
        self.sampling = sampling_params(t)
        self.reference = make_reference(model, beta=t.beta, use_lora=cfg.model.use_lora, load=load_reference)
        super().__init__(t, model, processor, train_samples, accelerator=accelerator,
                         updates_per_step=t.num_iterations, shuffle=t.shuffle_dataset)
        self.reference = self.prepare_frozen(self.reference, "reference")
        self.teacher = self.prepare_frozen(teacher, "teacher")
        self.vision_counter = VisionCallCounter(self.model)
        self.inputs = InputPrefetch(self, cfg.data.prompt_template, cfg.data.num_workers, cfg.data.on_bad,
                                    cfg.data.train_file)
        self.bad_videos = self.inputs.bad_videos
        self._last_completions: list[dict[str, Any]] = []
        self.sampler = DynamicSampler(self, rollout_seed) if t.dynamic_sampling else None
        self.rewards.to(self.accelerator.device)  # reward models, if any
        self._trainer_state: Any = None

    # ------------------------------------------------------------------------------------------ rollouts
    def score(self, batch: RolloutBatch, samples: Sequence[Sample]
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor], RewardBreakdown]:
        """Score ``batch`` with TRL's full reward call (:func:`timegrpo.rewards.columns.reward_call`: prompts,
        conversational completions, completion ids, the sample columns, and ``trainer_state``; the reward set adds
        ``log_extra``/``log_metric``). Returns the total rewards ``(N,)`` (weighted, None skipped as in TRL), the
        per-completion values ``(N,)`` (None as NaN) whose step means are logged: ``reward`` (the total),
        ``rewards/{name}/mean`` (each reward function; its std is logged too) and ``iou``, what the rewards
        reported (``log_extra("iou", ...)``), when one did (the trainer parses nothing itself); and the breakdown."""
        lengths = batch.completion_mask.sum(1).tolist()
        ids = batch.completion_ids.cpu()
        call = reward_call(samples, batch.num_generations, batch.completions,
                           [ids[r, :int(n)].tolist() for r, n in enumerate(lengths)], self.cfg.data.prompt_template)
        breakdown = self.rewards(**call, trainer_state=self.trainer_state())
        total = torch.tensor(breakdown.total)
        values = {"reward": total,
                  **{f"rewards/{key}/mean": _as_tensor(v) for key, v in breakdown.per_func.items()}}
        ious = breakdown.extra.get("iou")
        if ious is not None:
            values["iou"] = _as_tensor(ious)
        return total, values, breakdown

    def trainer_state(self) -> Any:
        """The ``trainer_state`` rewards get (TRL passes its ``TrainerState``; this one is updated in place):
        ``global_step`` (optimiser steps done), ``max_steps``, ``epoch`` (prompts trained on / samples),
        ``num_train_epochs``, ``train_batch_size`` (completions per process and micro-batch, TRL's meaning),
        ``logging_steps``, ``save_steps``, the process flags and ``log_history`` (the metrics of every step)."""
        t, o, step = self.args, self.order, self.state["step"]
        self._trainer_state = trainer_state(
            self._trainer_state, global_step=step, max_steps=self.total_steps, epoch=step * o.per_step / o.n,
            num_train_epochs=math.ceil(self.total_steps * o.per_step / o.n),
            train_batch_size=t.per_device_train_batch_size * t.num_generations, logging_steps=t.logging_steps,
            save_steps=t.save_steps, is_local_process_zero=self.accelerator.is_local_main_process,
            is_world_process_zero=self.accelerator.is_main_process, log_history=self.history)
        return self._trainer_state

    def rollout(self, samples: Sequence[Sample], seed: int, inputs: dict[str, Any] | None = None) -> ScoredRollout:
        """Sample and score one micro-batch, with old/reference/teacher log-probs (no gradients). ``inputs``:
        the samples' :func:`prompt_inputs` when already made (prefetched), else they are made here with the
        frames of the current step."""
        inputs = self.prompt_inputs(samples, self.state["step"]) if inputs is None else self._on_device(inputs)
        batch, rewards, log = self.draw(inputs, samples, seed)
        return self.scored(batch, rewards, log, inputs, samples)

    def prompt_inputs(self, samples: Sequence[Sample], step: int) -> dict[str, Any]:
        """The processor's inputs for ``samples`` (frames of optimiser ``step``: :meth:`step_videos`, chat
        prompt), on the device."""
        return self._on_device(prompt_inputs(self.processor, samples, self.step_videos(step),
                                             self.cfg.data.prompt_template))

    def _on_device(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.accelerator.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    def draw(self, inputs: dict[str, Any], samples: Sequence[Sample], seed: int
             ) -> tuple[RolloutBatch, torch.Tensor, RolloutLog]:
        """``G`` completions per prompt, seeded by ``seed``, with their total rewards ``(N,)`` and what they add
        to the step's metrics."""
        batch = self._sample(inputs, seed)
        rewards, values, breakdown = self.score(batch, samples)
        return batch, rewards, RolloutLog(_rollout_metrics(batch, rewards), values, breakdown.extra,
                                          breakdown.metrics)

    def scored(self, batch: RolloutBatch, rewards: torch.Tensor, log: RolloutLog | None,
               inputs: dict[str, Any], samples: Sequence[Sample], extra: dict[str, list[Any]] | None = None
               ) -> ScoredRollout:
        """A scored rollout of ``batch``: its loss mask and the old/reference/teacher log-probs (no gradients).
        ``extra``: the ``log_extra`` columns for ``completions.jsonl`` (default: ``log.extra``)."""
        t = self.args
        mask = batch.completion_mask.clone()
        if t.mask_truncated_completions:
            mask[batch.truncated.to(mask.device)] = 0
        old, ref, teacher = self._frozen_logps(batch, inputs)
        extra = (log.extra if log is not None else {}) if extra is None else extra
        rows = completion_rows(samples, batch.completions, rewards.tolist(), extra) if t.log_completions else []
        return ScoredRollout(batch=batch, rewards=rewards, mask=mask.to(self.accelerator.device), old_logps=old,
                             ref_logps=ref, teacher_logps=teacher, log=log, rows=rows)

    def _sample(self, inputs: dict[str, Any], seed: int) -> RolloutBatch:
        """``G`` completions per prompt from the policy in eval mode, seeded by ``seed``."""
        from trl.models.utils import unwrap_model_for_generation

        torch.manual_seed(seed)
        with unwrap_model_for_generation(self.model, self.accelerator) as gen_model:
            was_training = gen_model.training
            gen_model.eval()
            batch = generate(gen_model, self.processor, inputs, self.sampling,
                             share_prefix=self.args.share_prompt_prefix)
            gen_model.train(was_training)
        return batch

    def _frozen_logps(self, batch: RolloutBatch, inputs: dict[str, Any]
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Old-policy (``num_iterations > 1``), reference (``beta != 0``) and teacher log-probs ``(N, Lc)``."""
        t = self.args
        kw = {"temperature": t.temperature, "batch_size": t.logprob_batch_size,
              "share_prefix": t.share_prompt_prefix}
        old = completion_logps(self.model, batch, **kw) if t.num_iterations > 1 else None
        ref = teacher = None
        if t.beta != 0:
            with reference_context(self.model, self.reference) as ref_model:
                ref = completion_logps(ref_model, batch, **kw)
        if self.teacher is not None:  # the teacher has its own vision tower: encode once for it too
            feats = encode_videos(self.teacher, inputs["pixel_values_videos"], inputs["video_grid_thw"])
            teacher = completion_logps(self.teacher, replace(batch, features=feats), **kw)
        return old, ref, teacher

    def advantages(self, local_rewards: torch.Tensor) -> torch.Tensor:
        """Advantages ``(n_local,)`` of this process's rewards of the step.

        The estimator sees the rewards of every process (gathered in rank order), so ``scale_rewards: batch``
        divides by the std of the whole step as in TRL; groups never straddle processes, so group statistics
        are unchanged. This process's slice is returned.
        """
        t = self.args
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
        t = self.args
        step = self.state["step"]
        t0 = time.perf_counter()
        videos0 = self.vision_counter.videos
        rollouts, logs, prompts, sampling = self._step_rollouts(step)
        all_rewards = torch.cat([r.rewards for r in rollouts])
        advantages = self.advantages(all_rewards).split([r.rewards.numel() for r in rollouts])
        buffer = [MicroBatch(r, a.to(self.accelerator.device)) for r, a in zip(rollouts, advantages, strict=True)]
        zero_std = zero_variance_share(all_rewards, t.num_generations)
        tokens = self._step_tokens(buffer)
        t_rollout = time.perf_counter() - t0
        loss_logs = [self._backward(mb, tokens) for _ in range(t.num_iterations) for mb in buffer]
        self.state["step"] = step + 1
        # a group of one (OPD) has no spread: the group statistics would read 1.0 and 0 and mean nothing
        metrics = self.reduce({"frac_reward_zero_std": zero_std}, "mean") if t.num_generations > 1 else {}
        metrics.update(rollout_metrics(logs, self.reduce))
        metrics.update(loss_metrics(loss_logs, self.reduce, t.num_iterations))
        metrics.update(self.reduce({"vision_tower_calls": self.vision_counter.videos - videos0,
                                    "prompts": prompts}, "sum"))
        metrics.update(sampling)
        if t.log_completions:
            self._last_completions = self._completion_rows(buffer)
        metrics.update(step=step + 1, learning_rate=self.scheduler.get_last_lr()[0],
                       step_time=time.perf_counter() - t0, rollout_time=t_rollout)
        metrics.update(self._logged_metrics(logs, metrics))
        return metrics

    def _step_rollouts(self, step: int) -> tuple[list[ScoredRollout], list[RolloutLog], int, dict[str, float]]:
        """This process's scored micro-batches of ``step``, their rollout metrics, the prompts it drew, and the
        dynamic-sampling metrics (:mod:`timegrpo.trainer.dynamic`; none without ``dynamic_sampling``)."""
        if self.sampler is not None:
            return self.sampler.step(step)
        t = self.args
        step_positions = self.step_positions(step)
        rollouts = []
        for k, positions in enumerate(step_positions):
            samples, inputs = self.inputs.get(step, k)  # prefetched (data.num_workers)
            rollouts.append(self.rollout(samples, rollout_seed(t.seed, step, positions[0]), inputs))
        return rollouts, [r.log for r in rollouts], sum(len(p) for p in step_positions), {}

    def _logged_metrics(self, logs: list[RolloutLog], taken: dict[str, float]) -> dict[str, float]:
        """What the rewards passed to ``log_metric`` this step (names gathered over processes, as TRL does); a name
        the trainer logs itself is an error."""
        names = sorted({name for log in logs for name in log.logged})
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            names = sorted(set(gather_object(names)))
        clash = sorted(set(names) & set(taken))
        if clash:
            raise RewardError(f"a reward logged metric(s) {clash} with log_metric, which the trainer logs itself; "
                              "rename them")
        return logged_metrics(logs, self.reduce, names)

    def _backward(self, mb: MicroBatch, tokens: float) -> dict[str, float]:
        """Loss and backward of one micro-batch (and, on the last of an accumulation, clip + optimiser step)."""
        with self.accelerator.accumulate(self.model), train_mode(self.model):
            logps = completion_logps(self.model, mb.rollout.batch, temperature=self.args.temperature, with_grad=True,
                                     batch_size=self.args.logprob_batch_size,
                                     share_prefix=self.args.share_prompt_prefix)
            out = compute_policy_loss(mb.loss_inputs(logps), self.loss_settings, tokens_per_micro_batch=tokens)
            log = {"loss": float(out.loss.detach()), **{k: float(v) for k, v in out.metrics.items()}}
            log.update(self.optimizer_step(out.loss))
        return log

    def _step_tokens(self, buffer: list[MicroBatch]) -> float:
        """The ``dapo`` normaliser: completion tokens of the whole step over all processes, per micro-batch."""
        local = torch.tensor(float(sum(mb.rollout.mask.sum() for mb in buffer)), device=self.accelerator.device)
        total = float(self.accelerator.reduce(local, reduction="sum"))
        return dapo_tokens_per_micro_batch(total, self.accelerator.num_processes, self.args.gradient_accumulation_steps)

    def _completion_rows(self, buffer: list[MicroBatch]) -> list[dict[str, Any]]:
        """Every completion of the step (all micro-batches, all processes in rank order) with its qid, reward
        and advantage."""
        rows = [{**row, "advantage": float(a)} for mb in buffer
                for row, a in zip(mb.rollout.rows, mb.advantages.tolist(), strict=True)]
        if self.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            rows = gather_object(rows)
        return rows

    def log_rows(self, step: int) -> dict[str, list[dict[str, Any]]]:
        """``completions.jsonl``: the step's completions with qid, reward, the rewards' ``log_extra`` columns and
        advantage (``log_completions``)."""
        return {"completions.jsonl": self._last_completions} if self.args.log_completions else {}


#: The keys of a ``completions.jsonl`` row that a ``log_extra`` column may not take.
ROW_KEYS = ("step", "qid", "completion", "reward", "advantage")


def completion_rows(samples: Sequence[Sample], completions: Sequence[str], rewards: Sequence[float],
                    extra: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """``completions.jsonl`` rows (before the advantage): qid, completion, total reward and every ``log_extra``
    column, prompt-major (``G = len(completions) / len(samples)``).

    >>> from timegrpo.data.schema import Sample
    >>> completion_rows([Sample("q1", "v", None, 9.0, "x", [(1, 2)])], ["a", "b"], [1.0, 0.0], {"iou": [0.5, None]})
    [{'qid': 'q1', 'completion': 'a', 'reward': 1.0, 'iou': 0.5}, {'qid': 'q1', 'completion': 'b', 'reward': 0.0, 'iou': None}]
    """
    clash = sorted(set(extra) & set(ROW_KEYS))
    if clash:
        raise RewardError(f"a reward reported log_extra column(s) {clash}, which completions.jsonl already has; "
                          "rename them")
    g = len(completions) // len(samples)
    return [{"qid": samples[i // g].qid, "completion": c, "reward": float(r), **{k: v[i] for k, v in extra.items()}}
            for i, (c, r) in enumerate(zip(completions, rewards, strict=True))]


def _rollout_metrics(batch: RolloutBatch, rewards: torch.Tensor) -> dict[str, float]:
    """Per micro-batch: ``reward_std`` (TRL's: the mean over prompts of the std within each group; rewards that
    are NaN, no reward function applied, left out; not with one completion per prompt), completion lengths and the
    share cut at ``max_completion_length``."""
    lengths = batch.completion_mask.sum(1).float()
    out = {"completions/mean_length": float(lengths.mean()),
           "completions/clipped_ratio": float(batch.truncated.float().mean())}
    if batch.num_generations > 1:
        groups = rewards.view(-1, batch.num_generations)
        out["reward_std"] = sum(float(_nanstd(g)) for g in groups) / len(groups)
    return out


def _as_tensor(values: Sequence[float | None]) -> torch.Tensor:
    """``(N,)`` float tensor, None as NaN."""
    return torch.tensor([float("nan") if x is None else float(x) for x in values])


def _nanstd(x: torch.Tensor) -> torch.Tensor:
    """Sample std of the non-NaN values of ``x`` (0 for fewer than two)."""
    x = x[~torch.isnan(x)]
    return x.std() if x.numel() > 1 else torch.tensor(0.0)
