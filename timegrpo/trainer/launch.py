"""What a launch configuration (``launch/*.yaml``) asks of the trainer: the Accelerator, DeepSpeed's settings
from the recipe, frozen models prepared the way the launch shards the policy, and whole weights for saving.

* :func:`make_accelerator`: single process, DDP or DeepSpeed as ``accelerate launch`` said. Without CUDA, DDP
  runs on gloo and DeepSpeed on its CPU accelerator (``DS_ACCELERATOR=cpu``); a launch that asks for DeepSpeed
  never falls back to DDP: it runs DeepSpeed or stops saying why.
* :func:`configure_deepspeed`: ``train_micro_batch_size_per_gpu``, ``gradient_accumulation_steps`` and
  ``gradient_clipping`` come from the recipe section, so one source of truth decides them.
* :func:`check_master_weights`: AdamW never updates bf16/fp16 weights in place (updates below their resolution
  round away); mixed precision keeps fp32 master weights (Accelerate autocast over fp32 weights, or DeepSpeed
  bf16/fp16 with its fp32 optimiser copy).
* :func:`prepare_frozen`: a reference or teacher as DeepSpeed needs it (TRL's ``prepare_deepspeed``: an
  evaluation engine of stage 3 under ZeRO-3, stage 0 otherwise), or moved to the device under DDP.
* :func:`gathered`: parameters made whole for a moment under ZeRO-3 (a collective), nothing otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

LOW_PRECISION = (torch.bfloat16, torch.float16)


def deepspeed_requested() -> bool:
    """True when ``accelerate launch`` was given a DeepSpeed config (it exports ``ACCELERATE_USE_DEEPSPEED``)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def _deepspeed_cpu_backend() -> str:
    """The process-group backend of DeepSpeed's CPU accelerator (gloo, or ccl with oneCCL), or an error that
    says why DeepSpeed cannot run on this machine."""
    try:
        from deepspeed.accelerator import get_accelerator
    except ImportError as err:
        raise RuntimeError(f"the launch config asks for DeepSpeed (launch/zero*.yaml) but it cannot be imported "
                           f"({err}): `pip install deepspeed`, or launch with launch/ddp.yaml") from err
    accel = get_accelerator()
    if accel.device_name() != "cpu":
        raise RuntimeError(f"the launch config asks for DeepSpeed and no CUDA device is visible, but DeepSpeed's "
                           f"accelerator is {accel.device_name()!r}: set DS_ACCELERATOR=cpu to run DeepSpeed on "
                           "the CPU, or launch with launch/ddp.yaml")
    return accel.communication_backend_name()


def make_accelerator(**kwargs: Any) -> Any:
    """An ``accelerate.Accelerator`` for the launch at hand, also on machines without CUDA.

    Without CUDA, Accelerate forms a process group only when told it runs on CPU (``cpu=True``: DDP over gloo;
    otherwise ``torchrun --nproc_per_node 2`` gives two independent runs), but ``cpu=True`` also drops
    DeepSpeed. So under a DeepSpeed launch the group is formed with DeepSpeed's CPU backend instead, and any
    launch that asked for DeepSpeed and did not get it is an error.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    want_deepspeed = deepspeed_requested()
    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1  # by accelerate launch / torchrun
    cpu_flag = os.environ.get("ACCELERATE_USE_CPU", "false").lower() == "true" or kwargs.get("cpu", False)
    if want_deepspeed and launched and not cpu_flag and not torch.cuda.is_available():
        handler = InitProcessGroupKwargs(backend=_deepspeed_cpu_backend())
        kwargs["kwargs_handlers"] = [*kwargs.get("kwargs_handlers", ()), handler]
    else:
        kwargs.setdefault("cpu", not torch.cuda.is_available())
    accelerator = Accelerator(**kwargs)
    if want_deepspeed and accelerator.distributed_type != DistributedType.DEEPSPEED:
        raise RuntimeError(f"the launch config asks for DeepSpeed but Accelerate runs {accelerator.distributed_type}: "
                           "drop --cpu / use_cpu (without CUDA, DeepSpeed runs on its CPU accelerator, "
                           "DS_ACCELERATOR=cpu) and start the processes with accelerate launch or torchrun, or "
                           "launch with launch/ddp.yaml")
    return accelerator


def deepspeed_stage(accelerator: Any) -> int | None:
    """The ZeRO stage of a DeepSpeed launch, None without DeepSpeed."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return None
    return int(plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))


def configure_deepspeed(accelerator: Any, section: Any) -> None:
    """Write the recipe section's micro-batch size (prompts per process), accumulation and clipping into the
    DeepSpeed config before ``prepare`` (Accelerate cannot infer the micro-batch without a dataloader, and
    would clip at 1.0 for ``auto``). Under DeepSpeed only its own ``gradient_clipping`` clips; Accelerate's
    ``clip_grad_norm_`` then only reports the norm."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    config = plugin.deepspeed_config
    config["train_micro_batch_size_per_gpu"] = int(section.per_device_train_batch_size)
    config["gradient_accumulation_steps"] = int(section.gradient_accumulation_steps)
    config["gradient_clipping"] = float(section.max_grad_norm or 0.0)


def check_master_weights(accelerator: Any, params: Iterable[nn.Parameter], *, allow: bool = False) -> None:
    """Refuse to let AdamW update bf16/fp16 weights in place (no fp32 master copy); the message gives the fix.
    ``allow`` (the section's ``low_precision_updates``) lets it, on purpose."""
    low = [p for p in params if p.dtype in LOW_PRECISION]
    if not low or allow:
        return
    if deepspeed_stage(accelerator) is not None and accelerator.mixed_precision in ("bf16", "fp16"):
        return  # DeepSpeed keeps fp32 master weights and optimiser state
    dtype = str(low[0].dtype).removeprefix("torch.")
    raise ValueError(
        f"{sum(p.numel() for p in low):,} trainable parameters are stored in {dtype} with no fp32 master copy: "
        f"AdamW would update them in {dtype} and small updates would round away. Either load the policy in "
        "float32 and train in mixed precision (model.torch_dtype: float32, train.bf16: true: Accelerate autocasts "
        "the forwards), or launch with DeepSpeed (launch/zero2.yaml, launch/zero3.yaml) with train.bf16: true "
        "(DeepSpeed keeps fp32 master weights and optimiser state); or, knowing the cost, set "
        "low_precision_updates: true")


def prepare_frozen(accelerator: Any, model: nn.Module | None, name: str = "frozen model") -> nn.Module | None:
    """A frozen model (reference, teacher) in eval mode, ready to run beside the prepared policy.

    Under DeepSpeed it is wrapped as an evaluation engine with the policy's config (TRL's
    ``prepare_deepspeed``): sharded like the policy under ZeRO-3, whole (stage 0) under ZeRO-1/2, in the
    launch's precision. Call it after the policy is prepared (the config's ``auto`` values are filled then).
    Logs how many of the model's weights this process holds.
    """
    if model is None:
        return None
    model.eval().requires_grad_(False)
    stage = deepspeed_stage(accelerator)
    if stage is None:
        model = model.to(accelerator.device)
        how = f"on {accelerator.device}"
    else:
        from trl.models.utils import prepare_deepspeed

        model = prepare_deepspeed(model, accelerator)
        how = f"DeepSpeed ZeRO-{stage if stage == 3 else 0} evaluation engine"
    total, local = weight_counts(model)
    logger.info("%s: %s, process %d holds %d of %d weights", name, how, accelerator.process_index, local, total)
    return model


def weight_counts(model: nn.Module) -> tuple[int, int]:
    """``(total, held here)`` weights of ``model``: they differ when ZeRO-3 shards it."""
    total = local = 0
    for p in model.parameters():
        total += int(getattr(p, "ds_numel", p.numel()))
        local += int(p.ds_tensor.numel()) if hasattr(p, "ds_tensor") else p.numel()
    return total, local


def gathered(accelerator: Any, params: Iterable[nn.Parameter]) -> AbstractContextManager[Any]:
    """A context in which ``params`` are whole on every process: DeepSpeed's ``GatheredParameters`` under
    ZeRO-3 (every process must enter it), nothing otherwise."""
    if deepspeed_stage(accelerator) != 3:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(params), modifier_rank=None)
