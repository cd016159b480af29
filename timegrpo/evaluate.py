"""Batch inference: samples -> completions -> prediction records -> grounding metrics.

Greedy by default, with every sampling parameter set explicitly (never the checkpoint's generation
defaults). The metric is computed with the same IoU function as the reward (:func:`timegrpo.spans.temporal_iou`),
and a completion that does not parse scores IoU 0 and is counted (``unparsed``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from timegrpo.data.schema import Sample
from timegrpo.inputs import VideoSource, prompt_inputs
from timegrpo.metrics import grounding_metrics
from timegrpo.rewards import get_reward
from timegrpo.rollout import SamplingParams, generate
from timegrpo.spans import parse_answer, temporal_iou


def greedy(max_new_tokens: int) -> SamplingParams:
    """Greedy decoding, one completion per prompt, at most ``max_new_tokens``."""
    return SamplingParams(num_generations=1, max_completion_length=max_new_tokens, do_sample=False)


def prediction_record(sample: Sample, completion: str) -> dict[str, Any]:
    """One predictions.jsonl line: the official moment-retrieval fields plus the raw completion and its IoU.

    >>> r = prediction_record(Sample("3", "v", None, 30.0, "q", [(10.0, 20.0)]), "<answer>12 to 20</answer>")
    >>> r["pred_relevant_windows"], r["iou"]
    ([[12.0, 20.0, 1.0]], 0.8)
    """
    span = parse_answer(completion, sample.duration)
    return {
        "qid": sample.qid,
        "vid": sample.vid,
        "query": sample.query,
        "duration": sample.duration,
        "completion": completion,
        "pred_relevant_windows": [] if span is None else [[span[0], span[1], 1.0]],
        "iou": temporal_iou(span, sample.windows) if sample.windows else None,
    }


def iter_predictions(model: nn.Module, processor: Any, samples: Sequence[Sample], videos: VideoSource,
                     template: str, *, batch_size: int = 8, sampling: SamplingParams | None = None
                     ) -> Iterator[dict[str, Any]]:
    """Yield one prediction record per sample, in order, ``batch_size`` prompts per generate call."""
    sampling = sampling or greedy(64)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for i in range(0, len(samples), batch_size):
            chunk = list(samples[i:i + batch_size])
            inputs = prompt_inputs(processor, chunk, videos, template)
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            batch = generate(model, processor, inputs, sampling)
            for s, text in zip(chunk, batch.completions, strict=True):
                yield prediction_record(s, text)
    finally:
        model.train(was_training)


def summarize(records: Sequence[dict[str, Any]], *, think: bool = True) -> dict[str, float]:
    """R1@{0.3,0.5,0.7}, mIoU (percent), ``format_rate`` (percent of completions in the template's format,
    the ``format`` reward for think templates and ``answer_format`` otherwise) and the ``unparsed`` count."""
    ious = [r["iou"] if r["pred_relevant_windows"] else 0.0 for r in records]
    out = dict(grounding_metrics(ious))
    fmt = get_reward("format" if think else "answer_format")
    rates = fmt([r["completion"] for r in records])
    out["format_rate"] = round(100.0 * sum(float(v or 0.0) for v in rates) / max(len(records), 1), 2)
    out["unparsed"] = sum(1 for r in records if not r["pred_relevant_windows"])
    out["n"] = len(records)
    return out


def evaluate_samples(model: nn.Module, processor: Any, samples: Sequence[Sample], videos: VideoSource,
                     template: str, *, batch_size: int = 8, max_new_tokens: int = 64, think: bool = True
                     ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Greedy predictions for ``samples`` and their summary metrics."""
    records = list(iter_predictions(model, processor, samples, videos, template, batch_size=batch_size,
                                    sampling=greedy(max_new_tokens)))
    return summarize(records, think=think), records
