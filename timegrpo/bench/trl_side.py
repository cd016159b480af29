"""TRL's ``GRPOTrainer`` on the same work as timegrpo's, instrumented with the same phase names.

TRL has no video path, so each prompt's sampled video frames reach it as a list of images: every other frame
(frames ``0, 2, 4, ...``), at the same size. A video merges frame pairs into one temporal patch; a single image
is one temporal patch of its own, so ``frames/2`` images carry exactly the video's ``frames/2 * (size/28)^2``
visual tokens (checked per step by counting ``<|image_pad|>`` against ``<|video_pad|>`` in the processor
outputs). The same model folder, prompt text, reward functions, G, completion length (``min_new_tokens =
max_completion_length``), loss type, beta, learning rate, clipping and frozen vision tower (merger and LLM
train) are used; TRL's own defaults that would change the work are set to timegrpo's: ``bf16`` (TRL: on)
follows the workload's dtype and ``gradient_checkpointing`` (TRL: on) the workload's setting (off by default).

What TRL does by design and is therefore measured: its sampler repeats each prompt G times, so the frames
are read, converted and run through the processor G times per prompt (twice: once to generate, once for the
loss forwards), and the vision tower encodes every completion's copy of the images in generation and in each
log-prob forward (reference, train).

The data rows come from a ``datasets.Dataset`` of indices whose transform reads the frames through the same
:func:`timegrpo.data.source.video_source` (same frame cache) as timegrpo, so both sides read identical pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from timegrpo.bench.sides import ProcessorLog, Side, sync_fn
from timegrpo.bench.workload import Workload


def image_messages(sample: Any, template: str, n_images: int) -> list[dict[str, Any]]:
    """timegrpo's chat messages for ``sample`` with the video entry replaced by ``n_images`` image placeholders
    (TRL fills them from the row's ``images``), at the video's place in the content."""
    from timegrpo.prompts import sample_messages

    out = []
    for message in sample_messages(sample, template):
        content = []
        for part in message["content"]:
            if part.get("type") == "video":
                content.extend({"type": "image"} for _ in range(n_images))
            else:
                content.append(part)
        out.append({"role": message["role"], "content": content})
    return out


def frames_to_images(frames: Any) -> list[Any]:
    """Every other frame of ``(T, C, H, W)`` float frames in [0, 255], as PIL RGB images (``T/2`` of them)."""
    import torch
    from PIL import Image

    u8 = frames[::2].round().clamp(0, 255).to(torch.uint8)
    return [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in u8]


def trl_dataset(work: Workload, timer: Any) -> Any:
    """A ``datasets.Dataset`` whose rows hold ``prompt`` (conversational), ``images``, ``windows`` and
    ``duration``, built on access from the frame cache (timed as ``data_loading``)."""
    import datasets

    videos = work.video_source()
    samples = work.samples
    template = work.config.template

    def row(i: int) -> dict[str, Any]:
        s = samples[i]
        frames, _ = videos(s)
        images = frames_to_images(frames)
        return {"prompt": image_messages(s, template, len(images)), "images": images,
                "windows": [[float(a), float(b)] for a, b in s.windows], "duration": s.duration}

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        with timer.phase("data_loading"):
            rows = [row(int(i)) for i in batch["index"]]
        return {k: [r[k] for r in rows] for k in rows[0]}

    return datasets.Dataset.from_list([{"index": i} for i in range(len(samples))]).with_transform(transform)


def trl_args(work: Workload) -> Any:
    """TRL's ``GRPOConfig`` mirroring :func:`timegrpo.bench.sides.train_config` (see the module docstring)."""
    import torch
    from trl import GRPOConfig

    cfg = work.config
    bf16 = cfg.resolved_dtype() == "bfloat16"
    return GRPOConfig(
        output_dir=str(work.root / "trl-out"), per_device_train_batch_size=cfg.prompts * cfg.num_generations,
        gradient_accumulation_steps=1, num_generations=cfg.num_generations, num_iterations=1,
        max_completion_length=cfg.completion_len, generation_kwargs={"min_new_tokens": cfg.completion_len},
        temperature=1.0, top_p=1.0, top_k=0, beta=cfg.beta, loss_type=cfg.loss_type, scale_rewards="group",
        epsilon=0.2, learning_rate=cfg.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, max_steps=cfg.total_steps, shuffle_dataset=False, seed=cfg.seed,
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True, log_completions=False,
        use_cpu=not torch.cuda.is_available(), bf16=bf16, fp16=False,
        gradient_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=0, remove_unused_columns=False, mask_truncated_completions=False,
    )


def _logprob_phase(*args: Any, **kwargs: Any) -> str:
    import torch

    return "train_forward" if torch.is_grad_enabled() else "logprob"


class TRLSide(Side):
    """TRL's GRPOTrainer on the workload. :meth:`run` trains ``warmup + steps`` steps and calls ``between()``
    after each one (outside the timed span): the benchmark runs one timegrpo step there, so the two trainers
    alternate step by step and share whatever load the machine is under."""

    name = "trl"

    def __init__(self, work: Workload) -> None:
        super().__init__(work.config)
        from transformers import AutoProcessor
        from trl import GRPOTrainer

        from timegrpo.models.loading import load_policy
        from timegrpo.rewards import get_reward

        model, _ = load_policy(str(work.model_path), dtype=work.config.resolved_dtype())
        processor = AutoProcessor.from_pretrained(str(work.model_path))
        self.trainer = trainer = GRPOTrainer(
            model=model, reward_funcs=[get_reward("tiou"), get_reward("format")], args=trl_args(work),
            train_dataset=trl_dataset(work, self.timer), processing_class=processor)
        self.probe_models([trainer.model, trainer.ref_model])
        self.plog = ProcessorLog(processor)
        p, t = self.patcher, self.timer
        p.wrap(trainer, "_tokenize_prompts", t, "data_processing")
        p.wrap_call(trainer.processing_class, t, "data_processing", after=self.plog)
        p.wrap(trainer, "_generate_single_turn", t, "generation")
        p.wrap(trainer, "_calculate_rewards", t, "reward")
        p.wrap(trainer, "_get_per_token_logps_and_entropies", t, _logprob_phase)
        p.wrap(trainer.accelerator, "backward", t, "backward")
        p.wrap(trainer, "_clip_grad_norm", t, "optimizer")

    def run(self, between: Callable[[], None] | None = None) -> None:
        from transformers.trainer_callback import PrinterCallback

        self.trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
        self.trainer.add_callback(_StepClock(self, between))
        self.trainer.train()

    def finish_step(self, step_time: float) -> None:
        """Record the step that just ended (called by the callback)."""
        memory = self.memory.stop()
        cfg = self.cfg
        n = cfg.prompts * cfg.num_generations
        lengths = self.trainer._metrics["train"]["completions/mean_length"]
        completion_len = float(lengths[-1]) if lengths else float("nan")
        seen = int(self.trainer.state.num_input_tokens_seen)
        tokens = seen - getattr(self, "_seen", 0)
        self._seen = seen
        self.record(step_time, completion_len, int(tokens - n * completion_len), memory)


def _make_callback_class() -> type:
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """Times each optimiser step from the end of the previous one (data fetch included) and runs
        ``between`` after it, outside the timed span."""

        def __init__(self, side: TRLSide, between: Callable[[], None] | None) -> None:
            self.side, self.between = side, between
            self.t0 = 0.0

        def _begin(self) -> None:
            self.side.memory.start()
            self.t0 = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._begin()

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.side.timer.start("optimizer")

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.side.timer.stop()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync = sync_fn()
            if sync is not None:
                sync()
            self.side.finish_step(time.perf_counter() - self.t0)
            if self.between is not None:
                self.between()
            self._begin()

    return StepClock


def _StepClock(side: TRLSide, between: Callable[[], None] | None) -> Any:  # noqa: N802
    return _make_callback_class()(side, between)
