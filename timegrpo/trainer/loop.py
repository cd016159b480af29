"""The training loop both GRPO and SFT run on: data order, optimiser and schedule, accumulation, checkpoints,
logging. A trainer is a :class:`TrainLoop` with a ``train_step`` (:mod:`timegrpo.trainer.grpo`,
:mod:`timegrpo.trainer.sft`).

One optimiser step takes ``S = gradient_accumulation_steps`` micro-batches of ``P = per_device_train_batch_size``
samples on each of ``W`` processes; which samples is :class:`DataOrder`'s business, so it depends on
``(seed, step)`` only: 1 process x 2 accumulation and 2 processes x 1 accumulation see the same samples in a
step, and a resumed run sees what the uninterrupted run did. Exact resume also restores model, optimiser,
scheduler and RNG (``Accelerator.save_state``) and the step counter (JSON, :data:`STATE_FILE`); a checkpoint is
written under a temporary name and renamed when complete, so a kill never leaves one that resume would trust.

The learning-rate schedule is built for ``total_steps * updates_per_step`` optimiser updates. Accelerate steps
a prepared scheduler once per process at each update (it assumes a loader whose length shrinks with ``W``; a
transformers schedule is not one of DeepSpeed's, so under DeepSpeed too it is Accelerate's), so the schedule
is stretched ``W`` times: warm-up and decay count optimiser steps, and every layout has the learning rate of
one process at every step.

What the launch decides (DDP or DeepSpeed, frozen engines, gathering weights) is :mod:`timegrpo.trainer.launch`'s.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from timegrpo.config.core import ConfigError
from timegrpo.data.order import epoch_permutation
from timegrpo.data.source import FrameTransform, VideoSource, at_step
from timegrpo.models.loading import merged_lora_state_dict, unwrap
from timegrpo.trainer.launch import (
    check_master_weights,
    configure_deepspeed,
    gathered,
    make_accelerator,
    prepare_frozen,
)
from timegrpo.trainer.skips import dedupe_skipped

StepHook = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class DataOrder:
    """Which samples this process's micro-batches take at each optimiser step.

    Global micro-batch ``m = step * S + k`` covers ``P * W`` consecutive positions of the data order, whose
    epoch ``e`` is :func:`timegrpo.data.order.epoch_permutation` ``(seed, e, n)`` (the identity when not
    shuffled). Two ways to meet the end of an epoch:

    * ``epoch_aligned=False`` (GRPO): positions run on into the next epoch, so every micro-batch is full and
      process ``r`` takes the contiguous ``P`` positions ``[r*P, (r+1)*P)`` of it;
    * ``epoch_aligned=True`` (SFT): every epoch starts a new micro-batch, the last one of an epoch is short,
      and process ``r`` takes every ``W``-th sample of it from the ``r``-th on (sizes differ by at most one; a
      last micro-batch with fewer samples than processes is topped up from the start of the epoch).

    >>> order = DataOrder(n=5, seed=0, per_device=2, accumulation=1, world=1, rank=0, shuffle=False)
    >>> [order.step_positions(s) for s in range(3)]
    [[[0, 1]], [[2, 3]], [[4, 0]]]
    >>> aligned = DataOrder(n=5, seed=0, per_device=2, accumulation=1, world=1, rank=0, shuffle=False,
    ...                     epoch_aligned=True)
    >>> [aligned.step_positions(s) for s in range(4)]
    [[[0, 1]], [[2, 3]], [[4]], [[0, 1]]]
    """

    n: int
    seed: int
    per_device: int
    accumulation: int
    world: int
    rank: int
    shuffle: bool = True
    epoch_aligned: bool = False

    @property
    def per_micro_batch(self) -> int:
        """Samples of one micro-batch over all processes (``P * W``)."""
        return self.per_device * self.world

    @property
    def per_step(self) -> int:
        """Samples of one optimiser step over all processes (``P * S * W``)."""
        return self.per_micro_batch * self.accumulation

    def steps_for(self, epochs: float) -> int:
        """Optimiser steps that cover ``epochs`` passes over the data (at least one)."""
        if self.epoch_aligned:
            micro = math.ceil(epochs * math.ceil(self.n / self.per_micro_batch))
            return max(1, math.ceil(micro / self.accumulation))
        return max(1, math.ceil(epochs * self.n / self.per_step))

    def order(self, epoch: int) -> list[int]:
        return epoch_permutation(self.seed, epoch, self.n) if self.shuffle else list(range(self.n))

    def step_positions(self, step: int) -> list[list[int]]:
        """Sample indices of this process's ``S`` micro-batches at optimiser ``step``."""
        return [self._micro_batch(step * self.accumulation + k) for k in range(self.accumulation)]

    def _micro_batch(self, m: int) -> list[int]:
        if self.epoch_aligned:
            epoch, k = divmod(m, max(1, math.ceil(self.n / self.per_micro_batch)))
            order = self.order(epoch)
            chunk = order[k * self.per_micro_batch:(k + 1) * self.per_micro_batch]
            chunk += order[:max(0, self.world - len(chunk))]  # fewer samples than processes: each gets one
            return chunk[self.rank::self.world]
        first = m * self.per_micro_batch + self.rank * self.per_device
        orders: dict[int, list[int]] = {}
        out = []
        for g in range(first, first + self.per_device):
            epoch, pos = divmod(g, self.n)
            if epoch not in orders:
                orders[epoch] = self.order(epoch)
            out.append(orders[epoch][pos])
        return out


class TrainLoop(ABC):
    """The loop skeleton over an :class:`timegrpo.config.OptimConfig` section (``train`` or ``sft``).

    Subclasses implement :meth:`train_step` (advance ``state["step"]`` and return the step's metrics, reduced
    over processes) and may add per-step files with :meth:`log_rows`. The model is prepared with AdamW (the
    section's learning rate, betas, epsilon, weight decay) and the section's scheduler.
    """

    #: Progress bar label and the metrics it shows.
    desc: ClassVar[str] = "train"
    postfix: ClassVar[tuple[str, ...]] = ("loss",)
    #: Evaluation during training, called after every step (:class:`timegrpo.trainer.periodic_eval.PeriodicEval`,
    #: set by :mod:`timegrpo.trainer.build`): its ``eval/...`` metrics, or ``{}`` when none is due.
    evaluator: Callable[[TrainLoop], dict[str, float]] | None = None
    #: The frames of the training samples (set by the subclass); evaluation reads them unchanged.
    videos: VideoSource
    #: A per-sample, step-aware change of the training frames (:data:`timegrpo.data.source.FrameTransform`; the
    #: recipe's ``masking`` section sets :class:`timegrpo.data.masking.CurriculumMasking`), applied in every path
    #: that loads training frames (:meth:`step_videos`). One with a ``pop_stats(step, reduce_sum)`` method
    #: reports per-step metrics, logged with the step's (:meth:`frame_transform_metrics`).
    frame_transform: FrameTransform | None = None

    def __init__(self, args: Any, model: nn.Module, processor: Any, samples: Sequence[Any], *,
                 accelerator: Any = None, updates_per_step: int = 1, shuffle: bool = True,
                 epoch_aligned: bool = False) -> None:
        self.args = args
        self.accelerator = accelerator or make_accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps)
        self.processor = processor
        self.samples = list(samples)
        acc = self.accelerator
        self.order = DataOrder(n=len(self.samples), seed=args.seed, per_device=args.per_device_train_batch_size,
                               accumulation=args.gradient_accumulation_steps, world=acc.num_processes,
                               rank=acc.process_index, shuffle=shuffle, epoch_aligned=epoch_aligned)
        self.total_steps = args.max_steps if args.max_steps and args.max_steps > 0 else self.order.steps_for(
            args.num_train_epochs)
        optimizer, scheduler = self._optimizer(model, updates_per_step)
        configure_deepspeed(acc, args)
        self.model, self.optimizer, self.scheduler = acc.prepare(model, optimizer, scheduler)
        self.state = {"step": 0}  # the trainer's counters, saved as JSON in every checkpoint (never pickled)
        self.bad_videos: Any = None  # a timegrpo.trainer.skips.BadVideos when the trainer reads videos
        self.output_dir = Path(args.output_dir)
        self.history: list[dict[str, float]] = []

    def _optimizer(self, model: nn.Module, updates_per_step: int) -> tuple[torch.optim.Optimizer, Any]:
        from transformers import get_scheduler

        a = self.args
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameter: check freeze_vision_tower/train_merger/use_lora")
        check_master_weights(self.accelerator, params, allow=a.low_precision_updates)
        optimizer = torch.optim.AdamW(params, lr=a.learning_rate, weight_decay=a.weight_decay,
                                      betas=(a.adam_beta1, a.adam_beta2), eps=a.adam_epsilon)
        updates, stretch = self.total_steps * updates_per_step, self.accelerator.num_processes
        scheduler = get_scheduler(a.lr_scheduler_type, optimizer,
                                  num_warmup_steps=math.ceil(a.warmup_ratio * updates) * stretch,
                                  num_training_steps=updates * stretch)
        return optimizer, scheduler

    # -------------------------------------------------------------------------------------------- a step
    @abstractmethod
    def train_step(self) -> dict[str, float]:
        """One optimiser step of the subclass's objective (GRPO/OPD: :mod:`timegrpo.trainer.grpo`, SFT:
        :mod:`timegrpo.trainer.sft`); returns the step's metrics, including ``step``."""

    def step_positions(self, step: int) -> list[list[int]]:
        """Sample indices of this process's micro-batches at optimiser ``step`` (see :class:`DataOrder`)."""
        return self.order.step_positions(step)

    def step_videos(self, step: int, videos: VideoSource | None = None) -> VideoSource:
        """The frame source of optimiser ``step``'s training samples: ``videos`` (default :attr:`videos`) with
        :attr:`frame_transform` bound to ``step`` of ``total_steps`` (:func:`timegrpo.data.source.at_step`), or
        ``videos`` itself without a transform. The step is bound by the caller, so a micro-batch prepared ahead
        by a prefetching thread gets the frames of the step it belongs to."""
        videos = self.videos if videos is None else videos
        if self.frame_transform is None:
            return videos
        return at_step(videos, self.frame_transform, step, self.total_steps)

    def frame_transform_metrics(self, step: int) -> dict[str, float]:
        """What :attr:`frame_transform` did at ``step`` (its ``pop_stats``, counts summed over processes), or
        nothing."""
        pop = getattr(self.frame_transform, "pop_stats", None)
        return {} if pop is None else dict(pop(step, lambda counts: self.reduce(counts, "sum")))

    def optimizer_step(self, loss: torch.Tensor) -> dict[str, float]:
        """Backward of one micro-batch's ``loss``, inside ``accelerator.accumulate``; on the last micro-batch
        of an accumulation also clip (``max_grad_norm``), step and schedule. Returns ``grad_norm`` when known."""
        acc = self.accelerator
        acc.backward(loss)
        log = {}
        if acc.sync_gradients and self.args.max_grad_norm:
            norm = acc.clip_grad_norm_(self.model.parameters(), self.args.max_grad_norm)
            if norm is not None:
                log["grad_norm"] = float(norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return log

    def reduce(self, metrics: dict[str, float], reduction: str) -> dict[str, float]:
        """Metrics over all processes (every process logs the same keys, in sorted order)."""
        if self.accelerator.num_processes == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], device=self.accelerator.device)
        values = self.accelerator.reduce(values, reduction=reduction)
        return dict(zip(keys, values.tolist(), strict=True))

    # ----------------------------------------------------------------------------------------- the loop
    def train(self, on_step: StepHook | None = None, max_seconds: float | None = None,
              progress: bool = True) -> list[dict[str, float]]:
        """Run until ``total_steps`` (or ``max_seconds`` of wall time, checked after each step on every
        process alike); log every ``logging_steps``, checkpoint every ``save_steps`` and at the end."""
        from tqdm.auto import tqdm

        a = self.args
        bar = tqdm(total=self.total_steps, initial=self.state["step"], desc=self.desc,
                   disable=not (progress and self.accelerator.is_main_process))
        t0 = time.perf_counter()
        try:
            while self.state["step"] < self.total_steps:
                if max_seconds is not None and self._elapsed(t0) >= max_seconds:
                    break
                metrics = self.train_step()
                metrics.update(self._skip_metrics(self.state["step"] - 1))
                metrics.update(self.frame_transform_metrics(self.state["step"] - 1))
                evaluated = self.evaluator(self) if self.evaluator is not None else {}
                metrics.update(evaluated)
                self.history.append(metrics)
                if on_step is not None:
                    on_step(metrics)
                step = self.state["step"]
                if step % max(1, a.logging_steps) == 0 or step == self.total_steps or evaluated:
                    self.log(metrics)
                if a.save_steps and step % a.save_steps == 0 and step < self.total_steps:
                    self.save_checkpoint()
                bar.update(1)
                bar.set_postfix({k: f"{metrics[k]:.3f}" for k in self.postfix if k in metrics})
        finally:
            bar.close()  # before any error message, so it starts on its own line
        self.save_checkpoint()
        if self.bad_videos is not None and self.accelerator.is_main_process:
            dedupe_skipped(self.output_dir)
        return self.history

    def _skip_metrics(self, step: int) -> dict[str, float]:
        """``skipped_samples``: samples of ``step`` replaced for an unreadable video, over all processes (only
        under ``data.on_bad`` skip or clip; :mod:`timegrpo.trainer.skips`)."""
        if self.bad_videos is None or self.bad_videos.on_bad == "error":
            return {}
        return self.reduce({"skipped_samples": float(self.bad_videos.replaced(step))}, "sum")

    def _elapsed(self, t0: float) -> float:
        elapsed = torch.tensor(time.perf_counter() - t0, device=self.accelerator.device)
        return float(self.accelerator.reduce(elapsed, reduction="max"))

    def log_rows(self, step: int) -> dict[str, list[dict[str, Any]]]:
        """Extra rows to append at a logging step: ``{file name in output_dir: rows}`` (none by default)."""
        return {}

    def log(self, metrics: dict[str, float]) -> None:
        """Append to ``output_dir/metrics.jsonl`` (main process) and to the Accelerate trackers (wandb)."""
        if not self.accelerator.is_main_process:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        step = int(metrics["step"])
        with open(self.output_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        for name, rows in self.log_rows(step).items():
            with open(self.output_dir / name, "a") as f:
                f.writelines(json.dumps({"step": step, **row}) + "\n" for row in rows)
        if self.accelerator.trackers:
            self.accelerator.log(metrics, step=step)

    # ------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """``output_dir/checkpoint-STEP``: Accelerate state (model, optimizer, scheduler, RNG) under ``state/``,
        the trainer's counters in ``state/{STATE_FILE}`` (JSON), and a ``from_pretrained``-loadable model +
        processor at the top.

        Written into ``.checkpoint-STEP.tmp`` and renamed when complete, the counters file last: a kill while
        saving leaves no ``checkpoint-STEP`` (the temporary folder is removed by the next save), and
        :meth:`load_checkpoint` refuses a folder without its counters file."""
        path = self.output_dir / f"checkpoint-{self.state['step']}"
        tmp = self.output_dir / f".{path.name}.tmp"
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)  # left by a run killed while saving
        acc.wait_for_everyone()
        acc.save_state(str(tmp / "state"))
        self.save_pretrained(tmp)
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "state" / STATE_FILE).write_text(json.dumps({"format": 1, **self.state}, indent=1) + "\n")
            if path.exists():
                shutil.rmtree(path)  # the same step saved again (a resumed run)
            os.replace(tmp, path)
            self._rotate_checkpoints()
        acc.wait_for_everyone()
        return path

    def save_pretrained(self, path: str | Path) -> Path:
        """A ``from_pretrained``-loadable model (a LoRA policy merged) and the processor in ``path``; every
        process must call it (gathering the weights is a collective under ZeRO-3). No second copy of the model
        is made on the device: DeepSpeed gathers ZeRO-3 weights to the CPU of the main process, and a LoRA
        adapter is merged on the CPU one layer at a time."""
        path = Path(path)
        state_dict = self.accelerator.get_state_dict(self.model)
        model = self.accelerator.unwrap_model(self.model)
        if hasattr(model, "peft_config"):
            if not self.accelerator.is_main_process:
                state_dict = None  # ZeRO-3 gathers on the main process only; the others take part in the gathers
            state_dict = merged_lora_state_dict(model, state_dict, lambda ps: gathered(self.accelerator, ps))
        if self.accelerator.is_main_process:
            unwrap(model).save_pretrained(path, state_dict=state_dict)
            self.processor.save_pretrained(path)
        return path

    def prepare_frozen(self, model: nn.Module | None, name: str) -> nn.Module | None:
        """A frozen reference or teacher placed as the launch needs (see :func:`timegrpo.trainer.launch.prepare_frozen`)."""
        return prepare_frozen(self.accelerator, model, name)

    def _rotate_checkpoints(self) -> None:
        """Delete the oldest ``checkpoint-N`` folders beyond ``save_total_limit``."""
        limit = self.args.save_total_limit
        if not limit:
            return
        found = sorted((p for p in self.output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                       key=lambda p: int(p.name.split("-")[-1]))
        for old in found[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimizer, scheduler, RNG and the step counter from a :meth:`save_checkpoint` folder;
        a folder without its counters file (an interrupted save, or not a timegrpo checkpoint) is refused."""
        state = Path(path) / "state"
        counters = read_checkpoint_state(path)
        self.accelerator.load_state(str(state))
        self.state.update({k: v for k, v in counters.items() if k != "format"})


#: The trainer's counters in a checkpoint's ``state/`` folder, written last: the checkpoint's completion marker.
STATE_FILE = "timegrpo_state.json"


def read_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """The counters of a complete checkpoint (``{"format": 1, "step": N, ...}``); a :class:`ConfigError` naming
    the folder when it is not one (no ``state/``, or no counters file: its save was interrupted)."""
    state = Path(path) / "state"
    if not state.is_dir():
        raise ConfigError(f"resume_from_checkpoint: {path} is not a timegrpo checkpoint (no state/ folder): pass an "
                          "output_dir/checkpoint-N folder written by a previous run")
    marker = state / STATE_FILE
    if not marker.is_file():
        raise ConfigError(f"resume_from_checkpoint: {path} is incomplete (no state/{STATE_FILE}): its save was "
                          "interrupted or it was written by an older timegrpo; resume from an earlier checkpoint-N")
    try:
        counters = json.loads(marker.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"resume_from_checkpoint: {marker} is not valid JSON ({err})") from None
    if not isinstance(counters, dict) or not isinstance(counters.get("step"), int):
        raise ConfigError(f"resume_from_checkpoint: {marker} has no integer 'step'")
    return counters


@contextmanager
def train_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in train mode inside the block (gradient checkpointing only checkpoints a module in train
    mode; ``from_pretrained`` returns eval mode), its previous mode restored after."""
    was_training = model.training
    model.train()
    try:
        yield model
    finally:
        model.train(was_training)


def mean_dicts(dicts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per key, the mean over the dicts that have it (keys sorted)."""
    keys = {k for d in dicts for k in d}
    return {k: sum(d[k] for d in dicts if k in d) / sum(1 for d in dicts if k in d) for k in sorted(keys)}
