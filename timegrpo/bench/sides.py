"""The two trainers under test, each instrumented from outside with the same phase names.

Phases (exclusive seconds per optimiser step):

* ``data_loading``: reading the sampled frames (the frame cache) and, for TRL, turning them into images;
* ``data_processing``: the chat template and the Qwen processor (pixel patches, token ids);
* ``generation``: HF ``generate`` of the G completions of every prompt (its vision-tower pass included);
* ``reward``: the reward functions;
* ``logprob``: log-prob forwards without gradients (reference, and old policy when needed);
* ``train_forward``: the forward with gradients of the loss;
* ``backward``: ``accelerator.backward``;
* ``optimizer``: gradient clipping and ``optimizer.step``;
* ``other``: the rest of the step (advantages, loss arithmetic, metrics, the trainer's own bookkeeping).

timegrpo's :class:`timegrpo.trainer.grpo.GRPOTrainer` is timed by wrapping its methods on the instance and the
module functions it calls (:mod:`timegrpo.trainer.grpo`'s ``prompt_inputs``, ``generate``, ``completion_logps``),
all restored when the benchmark ends. The completion length is fixed by setting the trainer's
``sampling.min_completion_length`` to ``max_completion_length`` (no trainer change needed). Both sides count the
tokens their language models compute in each phase (:class:`timegrpo.bench.timing.TokenProbe`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from timegrpo.bench.timing import MemoryMeter, Patcher, PhaseTimer, TokenProbe, VisionProbe
from timegrpo.bench.workload import BenchConfig, Workload

#: Phase names in report order; ``other`` is what the step took beyond them.
PHASES = ("data_loading", "data_processing", "generation", "reward", "logprob", "train_forward", "backward",
          "optimizer", "other")
#: The coarse split the issue asks for: phase group -> phases.
GROUPS = {
    "data": ("data_loading", "data_processing"),
    "generation": ("generation",),
    "reward": ("reward",),
    "logprob_forwards": ("logprob",),
    "backward_optimizer": ("train_forward", "backward", "optimizer"),
    "other": ("other",),
}


def sync_fn() -> Any:
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() else None


class ProcessorLog:
    """What the processor produced in each call: rows, prompt lengths and visual placeholder counts."""

    def __init__(self, processor: Any) -> None:
        tok = processor.tokenizer
        self.video_id = tok.convert_tokens_to_ids("<|video_pad|>")
        self.image_id = tok.convert_tokens_to_ids("<|image_pad|>")
        self.calls: list[dict[str, list[int]]] = []

    def __call__(self, out: Any) -> None:
        ids, mask = out["input_ids"], out["attention_mask"]
        rows = [list(map(int, r)) for r in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        masks = [list(map(int, m)) for m in (mask.tolist() if hasattr(mask, "tolist") else mask)]
        self.calls.append({
            "lengths": [sum(m) for m in masks],
            "video_pad": [r.count(self.video_id) for r in rows],
            "image_pad": [r.count(self.image_id) for r in rows],
        })

    def take(self) -> list[dict[str, list[int]]]:
        out, self.calls = self.calls, []
        return out


class Side:
    """One trainer's per-step records: ``steps`` holds a dict per optimiser step."""

    name = ""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.timer = PhaseTimer(sync_fn())
        self.patcher = Patcher()
        self.memory = MemoryMeter(cuda=sync_fn() is not None)
        self.probe: VisionProbe | None = None
        self.lm: TokenProbe | None = None
        self.plog: ProcessorLog | None = None
        self.steps: list[dict[str, Any]] = []

    def record(self, step_time: float, completion_len: float, prompt_tokens: int, memory: dict[str, float]) -> None:
        phases = self.timer.take()
        phases["other"] = max(0.0, step_time - sum(phases.values()))
        n = self.cfg.prompts * self.cfg.num_generations
        calls = self.plog.take() if self.plog else []
        self.steps.append({
            "step_time": step_time, "phases": phases, "vision": self.probe.take() if self.probe else {},
            "completion_len": completion_len, "tokens": prompt_tokens + n * completion_len,
            "processor_calls": calls, "lm_tokens": self.lm.take() if self.lm else {}, **memory,
        })

    def probe_models(self, models: Sequence[Any]) -> None:
        """Count the vision-tower work and the language-model tokens of ``models`` (policy, reference...)."""
        from timegrpo.models.loading import unwrap, vision_tower

        present = [m for m in models if m is not None]
        self.probe = VisionProbe([vision_tower(m) for m in present], sync_fn())
        self.lm = TokenProbe([unwrap(m).model.language_model for m in present], self.timer)

    def close(self) -> None:
        self.patcher.restore()
        for probe in (self.probe, self.lm):
            if probe is not None:
                probe.remove()


# ---------------------------------------------------------------------------------------------- timegrpo


def _logprob_phase(*args: Any, **kwargs: Any) -> str:
    return "train_forward" if kwargs.get("with_grad") else "logprob"


class TimegrpoSide(Side):
    """:class:`timegrpo.trainer.grpo.GRPOTrainer` on the workload, instrumented (see the module docstring), with
    ``train.share_prompt_prefix`` as the workload says or as ``share_prompt_prefix`` overrides."""

    name = "timegrpo"

    def __init__(self, work: Workload, share_prompt_prefix: bool | None = None, tcfg: Any = None,
                 teacher: Any = None) -> None:
        """``share_prompt_prefix``: override the workload's; ``tcfg``: the recipe of the trainer (default
        :func:`train_config`); ``teacher``: a frozen teacher for method ``opd`` (its vision tower is probed too)."""
        super().__init__(work.config)
        import timegrpo.trainer.grpo as trainer_module
        import timegrpo.trainer.prefetch as prefetch_module
        from timegrpo.models.loading import load_policy
        from timegrpo.trainer.grpo import GRPOTrainer
        from timegrpo.trainer.loop import make_accelerator

        cfg = work.config
        self.share = cfg.share_prompt_prefix if share_prompt_prefix is None else share_prompt_prefix
        if self.share != cfg.share_prompt_prefix:
            self.name = f"timegrpo (prefix {'shared' if self.share else 'not shared'})"
        tcfg = tcfg or train_config(work, self.share)
        model, processor = load_policy(str(work.model_path), dtype=cfg.resolved_dtype(),
                                       gradient_checkpointing=cfg.gradient_checkpointing)
        accelerator = make_accelerator(gradient_accumulation_steps=1,
                                       mixed_precision="bf16" if cfg.resolved_dtype() == "bfloat16" else "no")
        self.trainer = trainer = GRPOTrainer(tcfg, model, processor, work.samples, work.video_source(),
                                             accelerator=accelerator, teacher=teacher)
        trainer.sampling = replace(trainer.sampling, min_completion_length=cfg.completion_len)
        self.probe_models([trainer.model, trainer.reference, trainer.teacher])
        self.plog = ProcessorLog(processor)
        p, t = self.patcher, self.timer
        p.setattr(trainer, "videos", t.wrap(trainer.videos, "data_loading"))
        self._stepping = False
        self._wrap_global(prefetch_module, "prompt_inputs", "data_processing")
        p.wrap_call(processor, t, "data_processing", after=self.plog)
        self._wrap_global(trainer_module, "generate", "generation")
        p.wrap(trainer, "score", t, "reward")
        self._wrap_global(trainer_module, "completion_logps", _logprob_phase)
        # the trainer module encodes videos only for a teacher (its own vision tower): part of its scoring
        self._wrap_global(trainer_module, "encode_videos", "logprob")
        p.wrap(trainer.accelerator, "backward", t, "backward")
        p.wrap(trainer.accelerator, "clip_grad_norm_", t, "optimizer")
        p.wrap(trainer.optimizer, "step", t, "optimizer")

    def _wrap_global(self, module: Any, name: str, phase: str | Callable[..., str]) -> None:
        """Time ``module.name`` (shared by every trainer in the process) only while this side steps: another
        timegrpo side's patch sits around or inside this one and passes the calls of its own steps through."""
        fn = getattr(module, name)
        timed = self.timer.wrap(fn, phase)

        def gated(*args: Any, **kwargs: Any) -> Any:
            return (timed if self._stepping else fn)(*args, **kwargs)

        self.patcher.setattr(module, name, gated)

    def step(self) -> dict[str, float]:
        """One timed optimiser step; returns the trainer's metrics."""
        self.memory.start()
        t0 = time.perf_counter()
        self._stepping = True
        try:
            metrics = self.trainer.train_step()
        finally:
            self._stepping = False
        dt = time.perf_counter() - t0
        memory = self.memory.stop()
        calls = self.plog.calls if self.plog else []
        prompt_tokens = self.cfg.num_generations * sum(sum(c["lengths"]) for c in calls)
        self.record(dt, float(metrics["completions/mean_length"]), prompt_tokens, memory)
        self.steps[-1].update(vision_tower_calls=metrics["vision_tower_calls"], prompts=metrics["prompts"])
        return metrics


def train_config(work: Workload, share_prompt_prefix: bool = True) -> Any:
    """The timegrpo config of the workload (TRL's side mirrors it field by field)."""
    from timegrpo.config import DataConfig, ModelConfig, RecipeConfig, RLConfig

    cfg = work.config
    return RecipeConfig(
        method="grpo",
        model=ModelConfig(model_name_or_path=str(work.model_path), torch_dtype=cfg.resolved_dtype(),
                          gradient_checkpointing=cfg.gradient_checkpointing),
        data=DataConfig(prompt_template=cfg.template, min_pixels=cfg.size**2, max_pixels=cfg.size**2,
                        total_pixels=None, frame_cache_dir=str(work.cache_dir)),
        train=RLConfig(
            learning_rate=cfg.learning_rate, lr_scheduler_type="constant", max_steps=cfg.total_steps,
            per_device_train_batch_size=cfg.prompts, gradient_accumulation_steps=1,
            num_generations=cfg.num_generations, max_completion_length=cfg.completion_len, temperature=1.0,
            beta=cfg.beta, loss_type=cfg.loss_type, scale_rewards="group", reward_funcs=["tiou", "format"],
            shuffle_dataset=False, seed=cfg.seed, output_dir=str(work.root / "timegrpo-out"), save_steps=0,
            logging_steps=10**6, report_to="none", bf16=cfg.resolved_dtype() == "bfloat16",
            low_precision_updates=True,  # bf16 weights updated in place, as TRL does with the same model object
            share_prompt_prefix=share_prompt_prefix,
        ),
    )
