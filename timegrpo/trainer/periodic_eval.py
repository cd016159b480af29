"""Evaluation during training: every ``eval_steps`` optimiser steps (and after the last), the policy predicts
``data.eval_file`` (its first ``data.max_eval_samples``) and the step's metrics gain ``eval/mIoU``,
``eval/R1@0.3``, ``eval/R1@0.5``, ``eval/R1@0.7``, ``eval/format_rate``, ``eval/unparsed``, ``eval/n``, ... (and
the benchmark's own keys, e.g. QVHighlights' ``eval/MR-full-mAP``), logged to ``metrics.jsonl`` and wandb at
that step.

It runs the code of ``timegrpo eval`` (:mod:`timegrpo.evaluate`): greedy decoding with every sampling parameter
explicit (:func:`~timegrpo.evaluate.engine.explicit_generation_config`), the HF completer, the same answer
parser and :func:`~timegrpo.evaluate.score.eval_metrics` with the benchmark detected from the annotations. What
differs from a ``timegrpo eval`` run: the prompt template and video sampling are the recipe's (what the policy
trains on), the limit on new tokens is ``eval_max_new_tokens``, and the frames come from the trainer's frame
source (and its cache).

Under several processes the samples are sharded (every ``W``-th to each rank), every rank predicts its share
with the full weights (``unwrap_model_for_generation``, which gathers ZeRO-3 shards), and the records are
gathered so every rank computes the same metrics; the main process writes the records to
``output_dir/eval/step-N.jsonl``. Greedy decoding draws no random numbers, so evaluating leaves training as it
would have been without it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timegrpo.data.schema import Sample
from timegrpo.evaluate.engine import (
    explicit_generation_config,
    greedy,
    hf_completer,
    memo_videos,
    predict_batches,
)
from timegrpo.evaluate.predictions import shard
from timegrpo.evaluate.score import eval_metrics


@dataclass
class PeriodicEval:
    """Evaluate ``samples`` every ``every`` steps and after the last; see the module docstring.

    ``template`` is the prompt template name, ``benchmark`` the metric set
    (:data:`timegrpo.evaluate.benchmarks.BENCHMARKS`), ``on_bad`` what an unreadable video does (``error``
    stops; ``skip``/``clip`` leave the sample out, counted as ``eval/n_skipped``).
    """

    samples: list[Sample]
    template: str
    every: int
    benchmark: str = "grounding"
    batch_size: int = 8
    max_new_tokens: int = 1024
    on_bad: str = "error"

    def due(self, step: int, total_steps: int) -> bool:
        return self.every > 0 and step > 0 and (step % self.every == 0 or step == total_steps)

    def __call__(self, loop: Any) -> dict[str, float]:
        """``eval/...`` metrics of ``loop``'s model at its current step when one is due, else ``{}``."""
        step = loop.state["step"]
        if not self.due(step, loop.total_steps):
            return {}
        t0 = time.perf_counter()
        records, skipped = self.predict(loop)
        metrics, _ = eval_metrics(self.samples, records, benchmark=self.benchmark, think=self._think(),
                                  skipped=dict(Counter(skipped)))
        if loop.accelerator.is_main_process:
            _write_records(Path(loop.args.output_dir) / "eval" / f"step-{step}.jsonl", records)
        out = {f"eval/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        out["eval/seconds"] = time.perf_counter() - t0
        return out

    def _think(self) -> bool:
        from timegrpo.prompts import get_template

        return get_template(self.template).think

    def predict(self, loop: Any) -> tuple[list[dict[str, Any]], list[str]]:
        """Prediction records of every sample (this rank's share, then gathered) and the kinds of the
        samples skipped for an unreadable video."""
        from trl.models.utils import unwrap_model_for_generation

        acc = loop.accelerator
        mine = shard(self.samples, acc.process_index, acc.num_processes)
        sampling = greedy(self.max_new_tokens)
        records: list[dict[str, Any]] = []
        skipped: list[str] = []
        with unwrap_model_for_generation(loop.model, acc) as model:
            was_training = model.training
            model.eval()
            try:
                with explicit_generation_config(model, sampling):
                    complete = hf_completer(model, loop.processor, self.template, sampling)
                    for out in predict_batches(mine, memo_videos(loop.videos), complete,
                                               batch_size=self.batch_size, on_bad=self.on_bad):
                        records += out.records
                        skipped += [s.kind for s in out.skipped]
            finally:
                model.train(was_training)
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            records, skipped = gather_object(records), gather_object(skipped)
        return records, skipped


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def periodic_eval(cfg: Any, section: Any, samples: list[Sample]) -> PeriodicEval:
    """The :class:`PeriodicEval` of a recipe's ``train`` or ``sft`` ``section`` over ``samples`` (``data.eval_file``
    read as the training file is, its first ``data.max_eval_samples``): the recipe's template and anomaly policy,
    the benchmark detected from the file."""
    from timegrpo.data.formats import detect_format
    from timegrpo.evaluate.benchmarks import detect_benchmark

    d = cfg.data
    return PeriodicEval(samples, template=d.prompt_template, every=section.eval_steps,
                        benchmark=detect_benchmark(samples, d.format or detect_format(d.eval_file)),
                        batch_size=section.per_device_eval_batch_size, max_new_tokens=section.eval_max_new_tokens,
                        on_bad=d.on_bad)
