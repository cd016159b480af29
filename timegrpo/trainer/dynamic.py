"""DAPO's dynamic sampling (Yu et al. 2025, arXiv 2503.14476, section 3.2) for the GRPO step.

A group whose rewards all equal each other (or with fewer than two scorable completions:
:func:`timegrpo.algos.advantages.zero_variance_groups`) has advantage 0 everywhere and gives no policy gradient,
yet costs a full rollout; in temporal grounding many groups are like that (VideoTG-R1's motivation). With
``train.dynamic_sampling`` a step keeps drawing until it holds ``K = P * S * W`` groups with signal
(``P = per_device_train_batch_size``, ``S = gradient_accumulation_steps``, ``W`` processes):

1. a draw is one step's worth of prompts, the next ``K`` positions of the data stream (the seeded epoch
   permutations of :class:`timegrpo.trainer.loop.DataOrder`, run on across epochs), rolled out in the usual
   micro-batches of ``P`` prompts (process ``r`` takes positions ``k*P*W + r*P ...`` of its ``k``-th row) and
   scored. Draw ``d`` of a step seeds a micro-batch whose first prompt is sample ``i`` with the plain step's
   ``rollout_seed(seed, step, i + d * n)`` (``n`` samples): the first draw is exactly the plain step's rollouts,
   so a run in which no group lacks signal is the plain run, and every seed is a function of (seed, step,
   global position);
2. the groups of every process are gathered (token ids, texts, rewards: small) so every process makes the same
   choice: the first ``K`` groups with signal, in data order; more draws follow while fewer were found, at most
   ``max_resample`` extra ones. Short after that, the step proceeds topped up with the first zero-variance groups
   (advantage 0: they only add their KL term) and logs the shortfall (``verl`` raises instead);
3. the chosen groups are cut into micro-batches as a plain step's prompts are (row ``k``, process ``r``:
   groups ``k*P*W + r*P ...``), and each micro-batch is assembled again from its samples and its completions'
   token ids: prompts re-tokenised, videos encoded once more, then old/reference/teacher log-probs. The rollouts'
   own tensors (vision features included) are freed after each draw, so memory does not grow with the draws.

Because every choice is made on gathered, position-ordered data and every draw covers ``K`` positions, one
process with ``S`` accumulation steps and ``S`` processes with one make the same draws, keep the same groups and
train the same micro-batches; the data cursor (positions consumed so far) is part of the checkpointed state, so
a resumed run draws what the uninterrupted run drew. ``num_train_epochs`` counts trained steps (``K`` prompts
each); the extra draws run on into later epochs. Advantages (``scale_rewards: batch`` included) are computed over
the trained groups, as verl's DAPO recipe does; discarded groups with signal beyond the ``K`` needed are dropped,
not carried over (as verl).

Metrics (per step): ``dynamic_sampling/rounds`` (draws made, 1 = the first sufficed),
``dynamic_sampling/discarded_rollouts`` (completions drawn but not trained: zero-variance groups and surplus),
``dynamic_sampling/zero_std_groups`` (zero-variance groups drawn), ``dynamic_sampling/shortfall`` (groups with
signal missing from the step). The rollout metrics (``reward``, ``rewards/*``, ``completions/*``) are over all
drawn completions; ``frac_reward_zero_std`` is over the trained groups (0 unless there is a shortfall).

The data cursor lives in the trainer's ``state`` (``data_cursor``), saved with every checkpoint; a run resumed
from a checkpoint without one (dynamic sampling was off) goes on from where that run's plain steps stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from timegrpo.algos.advantages import zero_variance_groups
from timegrpo.models.vision import encode_videos
from timegrpo.rollout import RolloutBatch

logger = logging.getLogger(__name__)

#: The trainer's state key of the next unread position of the data stream.
CURSOR = "data_cursor"


@dataclass(frozen=True)
class Group:
    """One prompt's ``G`` drawn completions, kept on the CPU until the step trains on them."""

    position: int  # global position in the data stream
    sample: int  # index into the trainer's samples
    completion_ids: list[list[int]]  # G rows, each up to and including EOS (all tokens when truncated)
    truncated: list[bool]
    completions: list[str]
    rewards: list[float]  # G weighted totals (NaN: no reward applied)
    extra: dict[str, list[Any]] = field(default_factory=dict)  # the rewards' log_extra columns, G values each


def choose(signal: Sequence[bool], needed: int) -> tuple[list[int], int]:
    """Indices of the groups a step trains on, given which drawn groups (in data order) carry signal.

    The first ``needed`` with signal; when there are fewer, topped up with the first ones without. Returns the
    indices in data order and the shortfall (groups with signal missing).

    >>> choose([False, True, True, False, True], 2)
    ([1, 2], 0)
    >>> choose([False, True, False], 2)
    ([0, 1], 1)
    """
    with_signal = [i for i, s in enumerate(signal) if s][:needed]
    shortfall = needed - len(with_signal)
    fill = [i for i, s in enumerate(signal) if not s][:shortfall]
    return sorted(with_signal + fill), shortfall


def groups_of(batch: RolloutBatch, rewards: torch.Tensor, positions: Sequence[int], samples: Sequence[int],
              extra: dict[str, list[Any]] | None = None) -> list[Group]:
    """A drawn micro-batch as :class:`Group` s (token ids cut at each completion's mask)."""
    g = batch.num_generations
    lengths = batch.completion_mask.sum(1).tolist()
    ids = batch.completion_ids.cpu()
    out = []
    for i, (position, sample) in enumerate(zip(positions, samples, strict=True)):
        rows = range(i * g, (i + 1) * g)
        out.append(Group(position=position, sample=sample,
                         completion_ids=[ids[r, : int(lengths[r])].tolist() for r in rows],
                         truncated=[bool(batch.truncated[r]) for r in rows],
                         completions=[batch.completions[r] for r in rows],
                         rewards=[float(rewards[r]) for r in rows],
                         extra={k: [v[r] for r in rows] for k, v in (extra or {}).items()}))
    return out


def assemble(inputs: dict[str, Any], groups: Sequence[Group], features: Any, pad_id: int) -> RolloutBatch:
    """The :class:`RolloutBatch` of ``groups`` over their prompts' processor ``inputs`` (P rows, in order)."""
    g = len(groups[0].completion_ids)
    rows = [ids for grp in groups for ids in grp.completion_ids]
    length = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    device = inputs["input_ids"].device
    return RolloutBatch(
        prompt_ids=inputs["input_ids"].repeat_interleave(g, dim=0),
        prompt_mask=inputs["attention_mask"].repeat_interleave(g, dim=0),
        completion_ids=ids.to(device), completion_mask=mask.to(device),
        truncated=torch.tensor([t for grp in groups for t in grp.truncated]),
        completions=[c for grp in groups for c in grp.completions],
        video_index=[i for i in range(len(groups)) for _ in range(g)],
        prompt_inputs=inputs, features=features, num_generations=g)


class DynamicSampler:
    """Draws, filters and assembles a dynamic-sampling step for a :class:`timegrpo.trainer.grpo.GRPOTrainer`
    (see the module docstring). ``seed_fn(seed, step, position)`` seeds each drawn micro-batch."""

    def __init__(self, trainer: Any, seed_fn: Callable[[int, int, int], int]) -> None:
        self.trainer = trainer
        self.seed_fn = seed_fn

    def _sample_index(self, position: int) -> int:
        order = self.trainer.order
        epoch, pos = divmod(position, order.n)
        return order.order(epoch)[pos]

    def _draw(self, step: int, start: int, draw: int) -> tuple[list[Group], list[Any]]:
        """This process's share of draw ``draw`` of ``step`` (``K`` positions from ``start``): its groups and
        its micro-batches' metrics."""
        tr, o = self.trainer, self.trainer.order
        groups, logs = [], []
        for k in range(o.accumulation):
            first = start + k * o.per_micro_batch + o.rank * o.per_device
            positions = list(range(first, first + o.per_device))
            indices = [tr.bad_videos.usable(self._sample_index(p)) for p in positions]  # data.on_bad
            samples = [tr.samples[i] for i in indices]
            seed = self.seed_fn(tr.args.seed, step, indices[0] + draw * o.n)
            batch, rewards, log = tr.draw(tr.prompt_inputs(samples, step), samples, seed)
            groups += groups_of(batch, rewards, positions, indices, log.extra)
            logs.append(log)
        return groups, logs

    def _gather(self, groups: list[Group]) -> list[Group]:
        """Every process's groups, in data order (the same list on every process)."""
        if self.trainer.accelerator.num_processes > 1:
            from accelerate.utils import gather_object

            groups = gather_object(groups)
        return sorted(groups, key=lambda grp: grp.position)

    def step(self, step: int) -> tuple[list[Any], list[Any], int, dict[str, float]]:
        """This process's scored micro-batches of ``step``, the drawn chunks' metrics, the prompts this process
        drew, and the (global) ``dynamic_sampling/*`` metrics."""
        tr = self.trainer
        needed, g = tr.order.per_step, tr.args.num_generations
        tr.state.setdefault(CURSOR, step * needed)  # a run resumed from a plain run's checkpoint goes on from there
        drawn: list[Group] = []
        logs: list[Any] = []
        signal: list[bool] = []
        rounds = 0
        while rounds <= tr.args.max_resample and sum(signal) < needed:
            local, chunk_logs = self._draw(step, tr.state[CURSOR], rounds)
            tr.state[CURSOR] += needed
            new = self._gather(local)
            rewards = torch.tensor([r for grp in new for r in grp.rewards])
            signal += (~zero_variance_groups(rewards, g)).tolist()
            drawn += new
            logs += chunk_logs
            rounds += 1
        chosen, shortfall = choose(signal, needed)
        if shortfall and tr.accelerator.is_main_process:
            logger.warning("step %d: dynamic sampling found %d of %d groups with non-zero reward variance in %d "
                           "draws (max_resample %d); training with %d zero-variance groups", step + 1,
                           needed - shortfall, needed, rounds, tr.args.max_resample, shortfall)
        metrics = {"dynamic_sampling/rounds": float(rounds),
                   "dynamic_sampling/discarded_rollouts": float((len(drawn) - needed) * g),
                   "dynamic_sampling/zero_std_groups": float(len(signal) - sum(signal)),
                   "dynamic_sampling/shortfall": float(shortfall)}
        trained = [drawn[i] for i in chosen]
        return self._micro_batches(trained, step), logs, rounds * tr.order.accumulation * tr.order.per_device, metrics

    def _micro_batches(self, trained: list[Group], step: int) -> list[Any]:
        """This process's scored micro-batches of the chosen groups of ``step``, assembled again from token ids
        (the frames loaded again for ``step``: a step-aware frame transform gives the same frames as in the draw)."""
        tr, o = self.trainer, self.trainer.order
        out = []
        for k in range(o.accumulation):
            first = k * o.per_micro_batch + o.rank * o.per_device
            groups = trained[first:first + o.per_device]
            samples = [tr.samples[grp.sample] for grp in groups]
            inputs = tr.prompt_inputs(samples, step)
            features = encode_videos(tr.model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
            batch = assemble(inputs, groups, features, tr.processor.tokenizer.pad_token_id)
            rewards = torch.tensor([r for grp in groups for r in grp.rewards])
            names = dict.fromkeys(c for grp in groups for c in grp.extra)  # a column a draw lacks: None there
            extra = {c: [v for grp in groups for v in grp.extra.get(c, [None] * len(grp.rewards))] for c in names}
            out.append(tr.scored(batch, rewards, None, inputs, samples, extra))
        return out
