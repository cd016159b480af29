"""The next micro-batches' model inputs, prepared in background threads while the current one trains.

A micro-batch's inputs are :func:`timegrpo.prompts.prompt_inputs` of its samples: each video read, sampled
(through the frame cache when the recipe sets ``data.frame_cache_dir``) and processed (resized, normalised,
patched), and the prompts tokenised. Which samples a micro-batch takes is known ahead (the loop's
:class:`timegrpo.trainer.loop.DataOrder` depends on ``(seed, step)`` only), so :class:`InputPrefetch` starts the
next ``data.num_workers`` micro-batches as soon as one is taken. The loaded frames go through the loop's
:meth:`timegrpo.trainer.loop.TrainLoop.step_videos` for the step the micro-batch belongs to (not the step training
when the thread runs), so a step-aware frame transform (curriculum masking) sees the right step. Each worker thread
has its own copy of the processor (a fast tokenizer is not safe to share between threads); the inputs are the same
tensors as with ``num_workers: 0``, where everything is done in the loop when needed, as before. A sample whose
video cannot be read is replaced as ``data.on_bad`` says (:mod:`timegrpo.trainer.skips`), so the samples a
micro-batch trains on are returned with its inputs.
"""

from __future__ import annotations

import copy
import queue
from collections.abc import Callable
from typing import Any

from timegrpo.data.source import Prefetcher
from timegrpo.prompts import prompt_inputs
from timegrpo.trainer.skips import BadVideos

Inputs = dict[str, Any]
#: ``(optimiser step, sample indices)`` of one micro-batch.
Work = tuple[int, list[int]]


class InputPrefetch:
    """``get(step, k)``: the samples and the (CPU) :func:`prompt_inputs` of micro-batch ``k`` of optimiser
    ``step`` of ``loop`` (a :class:`timegrpo.trainer.loop.TrainLoop` with ``processor`` and ``videos``, a
    :data:`VideoSource`), under ``template``, computed ahead by ``num_workers`` threads (0: computed by ``get``).

    Micro-batches are numbered ``m = step * S + k`` (``S`` micro-batches per step); taking ``m`` starts
    ``m + 1 .. m + num_workers`` (never past the last step) and forgets anything started before ``m`` (a run
    resumed or cut short). A micro-batch asked for out of this order is computed on the spot.
    """

    def __init__(self, loop: Any, template: Any, num_workers: int, on_bad: str = "error",
                 source: str | None = None) -> None:
        self.loop = loop
        self.template = template
        # the loop's frame source looked up at each call (a profiler or a test may wrap it after construction)
        self.bad_videos = BadVideos(loop.samples, lambda s: loop.videos(s), on_bad, loop.output_dir, source)
        self.accumulation = loop.args.gradient_accumulation_steps
        # one processor copy per worker, made here: copying a fast tokenizer while another thread uses it fails
        self._copies: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(num_workers):
            self._copies.put(copy.deepcopy(loop.processor))
        self._prefetcher: Prefetcher[int, Work, tuple[list[int], Inputs]] = Prefetcher(
            self.inputs, num_workers, worker_fn=self._worker)

    def inputs(self, work: Work, processor: Any = None) -> tuple[list[int], Inputs]:
        """``(indices, inputs)``: the samples that train in place of ``work = (step, positions)`` (a bad video
        replaced) and their :func:`prompt_inputs` (with ``processor``, default the loop's)."""
        step, positions = work
        used, frames = self.bad_videos.load(positions, step)
        samples = [self.loop.samples[i] for i in used]
        by_sample = {id(self.loop.samples[i]): frames[i] for i in used}
        videos = self.loop.step_videos(step, lambda s: by_sample[id(s)])  # the step's frame transform, if any
        return used, prompt_inputs(processor or self.loop.processor, samples, videos, self.template)

    def _worker(self) -> Callable[[Work], tuple[list[int], Inputs]]:
        """A worker thread's function: :meth:`inputs` with the thread's own copy of the processor."""
        own = self._copies.get_nowait()
        return lambda work: self.inputs(work, own)

    def work(self, m: int) -> Work:
        """``(step, sample indices)`` of global micro-batch ``m``."""
        step, k = divmod(m, self.accumulation)
        return step, self.loop.step_positions(step)[k]

    def get(self, step: int, k: int) -> tuple[list[Any], Inputs]:
        """``(samples, prompt inputs)`` of micro-batch ``k`` of ``step``; starts the following ones."""
        pf = self._prefetcher
        m = step * self.accumulation + k
        for key in pf.pending():
            if key < m:
                pf.drop(key)
        used, inputs = pf.get(m, self.work(m))
        last = self.loop.total_steps * self.accumulation
        for ahead in range(m + 1, min(m + 1 + pf.num_workers, last)):
            pf.submit(ahead, self.work(ahead))
        return [self.loop.samples[i] for i in used], inputs

    def close(self) -> None:
        """Stop the worker threads (work not started is cancelled)."""
        self._prefetcher.close()
