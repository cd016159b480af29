"""Generation back-ends by name: ``hf`` (transformers ``generate``) and ``vllm`` (when vLLM is installed).

A back-end is a function ``build(cfg, *, world, device, template, sampling, video) -> Backend``: it loads the
model named by ``cfg`` (an :class:`timegrpo.evaluate.config.EvalConfig`) and returns the
:data:`timegrpo.evaluate.engine.Completer` that answers a batch of samples, and the context entered around the
whole generation loop. ``timegrpo eval --backend NAME`` looks it up in :data:`BACKENDS`; add one with
``BACKENDS.register(name, build)``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from timegrpo.evaluate.config import EvalError
from timegrpo.registry import Registry

if TYPE_CHECKING:
    from timegrpo.evaluate.config import EvalConfig
    from timegrpo.evaluate.engine import Completer


@dataclass
class Backend:
    """A loaded model: ``complete`` answers batches; ``context()`` is entered around the generation loop."""

    complete: Completer
    context: Callable[[], AbstractContextManager[Any]] = nullcontext


BACKENDS: Registry[Callable[..., Backend]] = Registry("eval back-end")


@BACKENDS.register("hf")
def hf_backend(cfg: EvalConfig, *, world: int, device: Any, template: Any, sampling: Any, video: Any) -> Backend:
    """The policy loaded with :func:`timegrpo.models.loading.load_policy`, frozen, on ``device``, in eval mode;
    generation inside :func:`timegrpo.evaluate.engine.explicit_generation_config`."""
    from timegrpo.evaluate import engine
    from timegrpo.models.loading import load_policy

    model, processor = load_policy(cfg.model, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation)
    model.requires_grad_(False)
    model.to(device).eval()
    complete = engine.hf_completer(model, processor, template, sampling)
    return Backend(complete, lambda: engine.explicit_generation_config(model, sampling))


def vllm_max_model_len(max_model_len: int | None, max_new_tokens: int, video: Any) -> int | None:
    """``max_model_len`` when given, else Time-R1's: the video's token budget + 4096 + the completion limit.

    >>> from types import SimpleNamespace
    >>> vllm_max_model_len(None, 1024, SimpleNamespace(total_pixels=3584 * 28 * 28, image_patch_size=14))
    8704
    """
    if max_model_len is not None or video.total_pixels is None:
        return max_model_len
    return video.total_pixels // (2 * video.image_patch_size) ** 2 + 4096 + max_new_tokens


@BACKENDS.register("vllm")
def vllm_backend(cfg: EvalConfig, *, world: int, device: Any, template: Any, sampling: Any, video: Any) -> Backend:
    """A ``vllm.LLM`` in this one process (``vllm.tensor_parallel_size`` GPUs), stopping at the model's EOS ids."""
    try:
        from vllm import LLM
    except ImportError as err:
        raise EvalError("--backend vllm needs vLLM (pip install 'timegrpo[vllm]'); or use --backend hf") from err
    if world > 1:
        raise EvalError("--backend vllm runs in one process and spans GPUs with --tensor-parallel-size; "
                        "launch it without accelerate")
    from transformers import AutoProcessor, GenerationConfig

    from timegrpo.evaluate import engine

    processor = AutoProcessor.from_pretrained(cfg.model)
    try:
        eos = GenerationConfig.from_pretrained(cfg.model).eos_token_id
    except OSError:
        eos = None
    eos = eos if eos is not None else processor.tokenizer.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos)
    seed = cfg.sampling.seed
    llm = LLM(model=cfg.model, dtype=cfg.dtype, tensor_parallel_size=cfg.vllm.tensor_parallel_size,
              gpu_memory_utilization=cfg.vllm.gpu_memory_utilization,
              max_model_len=vllm_max_model_len(cfg.vllm.max_model_len, cfg.sampling.max_new_tokens, video),
              limit_mm_per_prompt={"image": 0, "video": 1}, seed=seed)
    return Backend(engine.vllm_completer(llm, processor, template, sampling, stop_token_ids=eos, seed=seed))
