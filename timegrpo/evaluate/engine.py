"""Batch inference: samples -> completions (a back-end's :data:`Completer`) -> prediction records.

Greedy by default, with every sampling parameter set explicitly: during evaluation the model's
``generation_config`` is replaced by a fresh one that keeps only its special-token ids
(:func:`explicit_generation_config`), so a checkpoint's own defaults (Qwen-VL checkpoints ship sampling
settings such as a repetition penalty) never leak in. A record's ``iou`` is computed with the same IoU function
as the reward (:func:`timegrpo.spans.temporal_iou`) on the span :func:`timegrpo.parsing.parse_answer` reads; a
completion that does not parse scores IoU 0 and is counted (``unparsed``, :func:`timegrpo.evaluate.score.summarize`).

The HF completer generates several prompts per ``generate`` call (vision tower once per batch,
:func:`timegrpo.rollout.generate`); the vLLM completer (:func:`vllm_completer`) runs when vLLM is installed.
:mod:`timegrpo.evaluate.backends` builds them by name; :mod:`timegrpo.evaluate.run` drives a whole resumable run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from timegrpo.data.schema import Sample
from timegrpo.data.source import VideoSource
from timegrpo.evaluate.score import summarize
from timegrpo.parsing import parse_answer
from timegrpo.prompts import prompt_inputs
from timegrpo.rollout import SamplingParams, generate
from timegrpo.spans import temporal_iou

#: ``(samples, videos) -> (completions, truncated flags)``: one backend call for a batch of prompts.
Completer = Callable[[Sequence[Sample], VideoSource], tuple[list[str], list[bool]]]

#: Generation-config fields kept from the checkpoint: token ids only, never sampling behaviour.
_TOKEN_ID_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def greedy(max_new_tokens: int) -> SamplingParams:
    """Greedy decoding, one completion per prompt, at most ``max_new_tokens``."""
    return SamplingParams(num_generations=1, max_completion_length=max_new_tokens, do_sample=False)


def generation_config_for(model: nn.Module, sampling: SamplingParams) -> Any:
    """A fresh ``GenerationConfig``: ``model``'s special-token ids and ``sampling``'s values, nothing else.

    Everything the checkpoint's own ``generation_config`` says about decoding (beams, penalties,
    temperature, top-k, no-repeat n-grams, ...) is left out, so transformers' library defaults (off) apply
    to whatever ``sampling`` does not set.
    """
    from transformers import GenerationConfig

    from timegrpo.models.loading import unwrap

    old = unwrap(model).generation_config
    ids = {k: getattr(old, k, None) for k in _TOKEN_ID_FIELDS if getattr(old, k, None) is not None}
    kw = {k: v for k, v in sampling.generate_kwargs().items() if v is not None and k != "num_return_sequences"}
    return GenerationConfig(num_beams=1, num_return_sequences=sampling.num_generations, **ids, **kw)


@contextmanager
def explicit_generation_config(model: nn.Module, sampling: SamplingParams) -> Iterator[Any]:
    """Swap ``model.generation_config`` for :func:`generation_config_for` inside the block; yields the new one."""
    from timegrpo.models.loading import unwrap

    base = unwrap(model)
    old = base.generation_config
    base.generation_config = generation_config_for(model, sampling)
    try:
        yield base.generation_config
    finally:
        base.generation_config = old


def prediction_record(sample: Sample, completion: str, *, strict: bool = False,
                      truncated: bool | None = None) -> dict[str, Any]:
    """One predictions.jsonl line: the official moment-retrieval fields plus the raw completion and its IoU.

    ``iou`` is None when the sample has no ground truth (a test release); ``truncated`` (when known) says the
    completion hit the token limit. ``strict`` parses exactly as Time-R1 does.

    >>> r = prediction_record(Sample("3", "v", None, 30.0, "q", [(10.0, 20.0)]), "<answer>12 to 20</answer>")
    >>> r["pred_relevant_windows"], r["iou"]
    ([[12.0, 20.0, 1.0]], 0.8)
    """
    span = parse_answer(completion, sample.duration, strict=strict)
    rec = {
        "qid": sample.qid,
        "vid": sample.vid,
        "query": sample.query,
        "duration": sample.duration,
        "completion": completion,
        "pred_relevant_windows": [] if span is None else [[span[0], span[1], 1.0]],
        "iou": temporal_iou(span, sample.windows) if sample.windows else None,
    }
    if truncated is not None:
        rec["truncated"] = bool(truncated)
    return rec


# ----------------------------------------------------------------------------------------------- completers


def hf_completer(model: nn.Module, processor: Any, template: Any, sampling: SamplingParams) -> Completer:
    """A :data:`Completer` on HF ``generate``: one call for the whole batch (left padded, vision tower once).

    Call it inside :func:`explicit_generation_config` so that no checkpoint default applies.
    """
    device = next(model.parameters()).device

    def complete(samples: Sequence[Sample], videos: VideoSource) -> tuple[list[str], list[bool]]:
        inputs = prompt_inputs(processor, samples, videos, template)
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        batch = generate(model, processor, inputs, sampling)
        return list(batch.completions), [bool(t) for t in batch.truncated]

    return complete


def vllm_completer(llm: Any, processor: Any, template: Any, sampling: SamplingParams, *,
                   stop_token_ids: Sequence[int], seed: int | None = None) -> Completer:
    """A :data:`Completer` on a ``vllm.LLM`` (untested here: no vLLM on the CPU test machine).

    Each prompt is the chat template's text with the already-sampled frames ``(T, C, H, W)`` as
    ``multi_modal_data["video"]`` and their sampled fps as ``mm_processor_kwargs`` (as Time-R1's vLLM
    evaluation feeds Qwen2.5-VL), so vLLM sees the frames the HF backend sees. Greedy is ``temperature=0``.
    """
    from vllm import SamplingParams as VllmSampling

    from timegrpo.prompts import sample_messages

    params = VllmSampling(
        n=1, max_tokens=sampling.max_completion_length, min_tokens=sampling.min_completion_length,
        temperature=sampling.temperature if sampling.do_sample else 0.0,
        top_p=sampling.top_p if sampling.do_sample else 1.0,
        top_k=(sampling.top_k or -1) if sampling.do_sample else -1,
        repetition_penalty=sampling.repetition_penalty, stop_token_ids=list(stop_token_ids), seed=seed,
        skip_special_tokens=True,
    )

    def complete(samples: Sequence[Sample], videos: VideoSource) -> tuple[list[str], list[bool]]:
        prompts = []
        for s in samples:
            frames, meta = videos(s)
            text = processor.apply_chat_template(sample_messages(s, template), tokenize=False,
                                                 add_generation_prompt=True)
            fps = meta.fps * len(meta.frames_indices) / max(meta.total_num_frames, 1)  # qwen-vl-utils' sample fps
            prompts.append({"prompt": text, "multi_modal_data": {"video": frames},
                            "mm_processor_kwargs": {"fps": fps}})
        outs = llm.generate(prompts, params, use_tqdm=False)
        texts = [o.outputs[0].text for o in outs]
        return texts, [o.outputs[0].finish_reason == "length" for o in outs]

    return complete


# ----------------------------------------------------------------------------------------------- batches


@dataclass
class Skipped:
    """A sample left out: its video could not be sampled (``stage`` video, ``kind`` from :class:`VideoError`), or
    the annotation reader dropped its record (``stage`` annotation, ``kind`` the anomaly; ``qid`` None when the
    record could not be parsed, ``detail`` then says where it is)."""

    qid: str | None
    kind: str
    detail: str
    stage: str = "video"


@dataclass
class BatchOutput:
    """What one batch produced: prediction records, and the samples skipped under ``on_bad='skip'``."""

    records: list[dict[str, Any]]
    skipped: list[Skipped] = field(default_factory=list)


def memo_videos(videos: VideoSource, size: int = 4) -> VideoSource:
    """``videos`` with the last ``size`` results kept in memory (several queries of one video decode once)."""
    memo: OrderedDict[tuple, tuple[torch.Tensor, Any]] = OrderedDict()

    def load(sample: Sample) -> tuple[torch.Tensor, Any]:
        key = (sample.video, sample.video_start, sample.video_end)
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
        memo[key] = got = videos(sample)
        while len(memo) > size:
            memo.popitem(last=False)
        return got

    return load


def _load_batch(samples: Sequence[Sample], videos: VideoSource, on_bad: str
                ) -> tuple[list[Sample], dict[str, tuple[torch.Tensor, Any]], list[Skipped]]:
    """Frames of each sample; a :class:`VideoError` raises (``on_bad='error'``) or skips the sample, counted."""
    from timegrpo.data.video import VideoError

    kept, frames, skipped = [], {}, []
    for s in samples:
        try:
            frames[s.qid] = videos(s)
            kept.append(s)
        except VideoError as err:
            if on_bad == "error":
                raise VideoError(err.path, err.kind, f"{err} (qid {s.qid}); rerun with --on-bad skip to leave "
                                                     "such samples out, counted in metrics.json") from err
            skipped.append(Skipped(s.qid, err.kind, str(err)))
    return kept, frames, skipped


def _lookup(frames: dict[str, tuple[torch.Tensor, Any]]) -> VideoSource:
    return lambda s: frames[s.qid]


def predict_batches(samples: Sequence[Sample], videos: VideoSource, complete: Completer, *, batch_size: int = 8,
                    on_bad: str = "error", strict: bool = False) -> Iterator[BatchOutput]:
    """Records for ``samples`` in order, ``batch_size`` prompts per ``complete`` call, one :class:`BatchOutput`
    per batch. Under ``on_bad='skip'`` (or ``'clip'``) a sample whose video fails is skipped and reported."""
    if on_bad not in ("error", "skip", "clip"):
        raise ValueError(f"on_bad must be error, skip or clip, got {on_bad!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i in range(0, len(samples), batch_size):
        kept, frames, skipped = _load_batch(samples[i:i + batch_size], videos, on_bad)
        records = []
        if kept:
            texts, truncated = complete(kept, _lookup(frames))
            records = [prediction_record(s, t, strict=strict, truncated=tr)
                       for s, t, tr in zip(kept, texts, truncated, strict=True)]
        yield BatchOutput(records, skipped)


def iter_predictions(model: nn.Module, processor: Any, samples: Sequence[Sample], videos: VideoSource,
                     template: str, *, batch_size: int = 8, sampling: SamplingParams | None = None
                     ) -> Iterator[dict[str, Any]]:
    """Yield one prediction record per sample, in order, ``batch_size`` prompts per generate call."""
    sampling = sampling or greedy(64)
    was_training = model.training
    model.eval()
    try:
        with explicit_generation_config(model, sampling):
            complete = hf_completer(model, processor, template, sampling)
            for out in predict_batches(samples, videos, complete, batch_size=batch_size):
                yield from out.records
    finally:
        model.train(was_training)


def evaluate_samples(model: nn.Module, processor: Any, samples: Sequence[Sample], videos: VideoSource,
                     template: str, *, batch_size: int = 8, max_new_tokens: int = 64, think: bool = True
                     ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Greedy predictions for ``samples`` and their summary metrics."""
    records = list(iter_predictions(model, processor, samples, videos, template, batch_size=batch_size,
                                    sampling=greedy(max_new_tokens)))
    return summarize(records, think=think), records
