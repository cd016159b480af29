"""The options of ``timegrpo eval`` (:class:`EvalConfig`) and ``timegrpo score`` (:class:`ScoreConfig`).

Trees of dataclasses on the one config mechanism (:mod:`timegrpo.config.core`): every field has a type, a
default and a help string, and is validated in ``__post_init__`` (a :class:`~timegrpo.config.ConfigError`
naming the field); a YAML file (``--config``, e.g. ``eval/charades_sta.yaml``) gives values and ``--key value``
flags override them (``--fps 1``, ``--video.fps 1``). The ``video`` section of an eval is made of the recipe's
own video-sampling fields (:data:`VIDEO_FIELDS` of :class:`timegrpo.config.DataConfig`: same names, types,
defaults, help and checks; a test holds the two together), so an evaluation samples frames exactly as training
does unless told otherwise. The input paths have no default; a run checks them (:func:`require`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from timegrpo.config import ConfigError, DataConfig
from timegrpo.config.core import check, check_choice, opt, section
from timegrpo.errors import UserError

#: The DataConfig fields that set video sampling (:meth:`DataConfig.video_sampling_kwargs`).
VIDEO_FIELDS = ("fps", "nframes", "min_frames", "max_frames", "min_pixels", "max_pixels", "total_pixels",
                "prefer_duration", "duration_tolerance", "max_duration_mismatch")
ON_BAD = ("error", "skip", "clip")
DTYPES = ("auto", "bfloat16", "float16", "float32")


class EvalError(UserError, RuntimeError):
    """A problem with an eval run's inputs or output folder; the message says what to do."""


class PredictionError(UserError, ValueError):
    """A predictions file that cannot be scored (not json, no qid, a value of the wrong kind); the message names
    the file, the line or qid, and the fix. Invalid windows are not errors: they are counted and score 0."""


def require(cfg: Any, *names: str) -> None:
    """Raise :class:`ConfigError` naming every field of ``names`` that ``cfg`` leaves empty.

    >>> require(ScoreConfig(predictions="p.jsonl"), "predictions", "annotations")
    Traceback (most recent call last):
    ...
    timegrpo.config.core.ConfigError: missing: --annotations (give it as a flag or in --config)
    """
    missing = [f"--{n}" for n in names if not getattr(cfg, n)]
    check(not missing, "missing", f"{' '.join(missing)} (give {'it' if len(missing) == 1 else 'them'} as a flag or "
          "in --config)")


def _data_field(name: str) -> Any:
    """A field with the default and help of :class:`DataConfig`'s field ``name``."""
    f = DataConfig.__dataclass_fields__[name]
    return field(default=f.default, metadata=f.metadata)


@dataclass
class VideoOptions:
    """Section ``video``: frame sampling, with the defaults, help and checks of the recipe's DataConfig fields."""

    fps: float = _data_field("fps")
    nframes: int | None = _data_field("nframes")
    min_frames: int | None = _data_field("min_frames")
    max_frames: int = _data_field("max_frames")
    min_pixels: int = _data_field("min_pixels")
    max_pixels: int | None = _data_field("max_pixels")
    total_pixels: int | None = _data_field("total_pixels")
    prefer_duration: str = _data_field("prefer_duration")
    duration_tolerance: float = _data_field("duration_tolerance")
    max_duration_mismatch: float = _data_field("max_duration_mismatch")

    def __post_init__(self) -> None:
        try:
            self.data_config()
        except ConfigError as err:  # DataConfig's own checks, named as this section's fields
            raise ConfigError(str(err).replace(f"{DataConfig.SECTION}.", "video.", 1)) from None

    def data_config(self) -> DataConfig:
        """A :class:`DataConfig` with these values (its other fields at their defaults).

        >>> VideoOptions(nframes=8).data_config().video_sampling_kwargs()["nframes"]
        8
        """
        return DataConfig(**dataclasses.asdict(self))


@dataclass
class SamplingOptions:
    """Section ``sampling``: decoding, greedy unless ``do_sample``; the checkpoint's generation_config is ignored."""

    max_new_tokens: int = opt(1024, "Completion token limit (Time-R1 eval: 1024).")
    do_sample: bool = opt(False, "Sample instead of greedy decoding.")
    temperature: float = opt(1.0, "Sampling temperature (with do_sample).")
    top_p: float = opt(1.0, "Nucleus sampling mass (with do_sample; 1 = off).")
    top_k: int = opt(0, "Top-k sampling (with do_sample; 0 = off).")
    repetition_penalty: float = opt(1.0, "Repetition penalty (1 = off).")
    seed: int = opt(0, "Sampling seed (rank r uses seed + r).")

    def __post_init__(self) -> None:
        check(self.max_new_tokens >= 1, "sampling.max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        check(not self.do_sample or self.temperature > 0, "sampling.temperature",
              f"sampling needs temperature > 0, got {self.temperature}; greedy is do_sample off")
        check(0 < self.top_p <= 1 and self.top_k >= 0 and self.repetition_penalty > 0, "sampling",
              f"need 0 < top_p <= 1, top_k >= 0, repetition_penalty > 0; got {self.top_p}, {self.top_k}, "
              f"{self.repetition_penalty}")

    def params(self) -> Any:
        """The :class:`timegrpo.rollout.SamplingParams` of one completion per prompt, every value explicit.

        >>> p = SamplingOptions(32, do_sample=True, temperature=0.7).params()
        >>> p.num_generations, p.max_completion_length, p.generate_kwargs()["temperature"]
        (1, 32, 0.7)
        """
        from timegrpo.rollout import SamplingParams

        return SamplingParams(num_generations=1, max_completion_length=self.max_new_tokens, do_sample=self.do_sample,
                              temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              repetition_penalty=self.repetition_penalty)


@dataclass
class VllmOptions:
    """Section ``vllm``: the vLLM back-end's engine settings."""

    tensor_parallel_size: int = opt(1, "vLLM: GPUs per model.")
    gpu_memory_utilization: float = opt(0.9, "vLLM: share of GPU memory.")
    max_model_len: int | None = opt(
        None, "vLLM: context length (default: video token budget + 4096 + max_new_tokens, as Time-R1).")

    def __post_init__(self) -> None:
        check(self.tensor_parallel_size >= 1, "vllm.tensor_parallel_size",
              f"must be >= 1, got {self.tensor_parallel_size}")
        check(0 < self.gpu_memory_utilization <= 1, "vllm.gpu_memory_utilization",
              f"must be in (0, 1], got {self.gpu_memory_utilization}")


@dataclass
class EvalConfig:
    """``timegrpo eval``: predict every sample of an annotation file, then metrics and plots."""

    model: str | None = opt(None, "Model folder or Hub id (required to run).")
    annotations: str | None = opt(None, "Annotation file in any supported format (required to run).")
    out: str | None = opt(None, "Output folder (required to run; a rerun resumes in it).")
    format: str | None = opt(None, "Annotation format name (default: detected from the file).")
    videos: str | None = opt(None, "Folder of the videos (default: the paths written in the annotation file).")
    durations: str | None = opt(None, "Durations file for formats without them (Charades-STA csv).")
    template: str = opt("think", "Prompt template name: think, no_think or a registered one.")
    query_as_is: bool = opt(
        False, "Keep the query's case and final period (Time-R1's eval prompt; training lowercases).")
    strict_parse: bool = opt(False, "Parse answers exactly as Time-R1's code does.")
    batch_size: int = opt(8, "Prompts per generate call (per GPU).")
    on_bad: str = opt("error", "Bad annotation records and unreadable videos: stop (error), leave out and count "
                      "(skip), or clamp windows into [0, duration] and leave out the rest, counted (clip).")
    limit: int | None = opt(None, "Evaluate only the first N samples.")
    overwrite: bool = opt(False, "Discard existing predictions in out.")
    backend: str = opt(
        "hf", "Back-end that generates (timegrpo.evaluate.backends): hf (HF generate) or vllm (experimental: "
        "never run by timegrpo's tests or on a GPU yet; needs the vllm extra)."
    )
    dtype: str = opt("auto", f"Weights dtype: {', '.join(DTYPES)} (auto: the checkpoint's).")
    attn_implementation: str | None = opt(None, "Attention kernel, e.g. sdpa, flash_attention_2 (HF back-end).")
    frame_cache: str | None = opt(None, "Cache sampled frames in this folder (reruns decode nothing).")
    video: VideoOptions = section(VideoOptions, "Video sampling (defaults: Time-R1's, as in training).")
    sampling: SamplingOptions = section(SamplingOptions, "Decoding.")
    vllm: VllmOptions = section(VllmOptions, "vLLM engine settings (backend vllm).")

    def __post_init__(self) -> None:
        from timegrpo.evaluate.backends import BACKENDS

        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.limit is None or self.limit >= 1, "limit", f"must be >= 1 or none, got {self.limit}")
        check_choice("on_bad", self.on_bad, ON_BAD)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("backend", self.backend, BACKENDS.names())


@dataclass
class ScoreConfig:
    """``timegrpo score``: metrics of a predictions jsonl against an annotation file of any supported format."""

    predictions: str | None = opt(
        None, "Predictions jsonl: qid + pred_relevant_windows or completion (required to run).")
    annotations: str | None = opt(None, "Annotation file in any supported format (required to run).")
    format: str | None = opt(None, "Annotation format name (default: detected from the file).")
    benchmark: str = opt("auto", "Metric set (timegrpo.evaluate.benchmarks; auto: from the annotations).")
    json: bool = opt(False, "Print one JSON object keyed by metric name instead of the markdown table.")
    out_md: str | None = opt(None, "Also write the markdown table to this file.")
    on_bad: str = opt("clip", "Annotation anomaly policy passed to the reader: error, skip or clip.")
    durations: str | None = opt(None, "Durations file for formats without them (Charades-STA).")
    missing: str = opt("zero", "Annotations without a prediction: score as unparsable (zero) or leave out (skip).")
    strict: bool = opt(False, "Parse completions exactly as Time-R1's training code does (no <glue> fallback).")
    protocol: str = opt("spec", "Evaluation protocol (timegrpo.evaluate.protocols): spec (SPEC section 0, R1 counts "
                        "IoU >= m), time_r1 (Time-R1's eval scripts: last 'x to y' anywhere, R1 counts IoU > m) or "
                        "timelens (TimeLens-Bench's: first time pair, whole seconds, start >= end scores 0).")
    from_completion: bool = opt(False, "Parse 'completion' even when 'pred_relevant_windows' is present.")

    def __post_init__(self) -> None:
        from timegrpo.evaluate.benchmarks import BENCHMARKS

        check_choice("benchmark", self.benchmark, ("auto", *BENCHMARKS.names()))
        check_choice("on_bad", self.on_bad, ON_BAD)
        check_choice("missing", self.missing, ("zero", "skip"))
        from timegrpo.evaluate.protocols import PROTOCOLS

        check_choice("protocol", self.protocol, PROTOCOLS.names())
