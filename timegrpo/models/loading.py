"""Loading a Qwen2-VL / Qwen2.5-VL / Qwen3-VL policy: dtype, freezing, LoRA, gradient checkpointing, reference.

Time-R1 (SPEC section 1) trains the language model and the patch merger (the vision-to-LLM projector) and
freezes the vision transformer; both choices are switches here. With LoRA (through peft, restricted to the
language model's linear layers) the reference policy is the same model with its adapter disabled, so no
second copy is held in memory; a training merger is then one of the adapter's ``modules_to_save`` (peft trains
a copy and keeps the original), so the adapter-disabled reference is the base model, merger included. A
separate frozen reference exists only when ``beta != 0`` and LoRA is off: a copy of the policy, or, when the
policy's weights are sharded (DeepSpeed ZeRO-3), a fresh load of the checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from timegrpo.config.recipe import DEFAULT_LORA_TARGETS

logger = logging.getLogger(__name__)

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def vision_tower(model: nn.Module) -> nn.Module:
    """The vision transformer (``model.visual`` of the Qwen families), also under a peft wrapper."""
    base = unwrap(model)
    inner = getattr(base, "model", base)
    visual = getattr(inner, "visual", None)
    if visual is None:
        raise ValueError(f"{type(base).__name__} has no vision tower `.model.visual`: is this a Qwen-VL model?")
    return visual


def merger_modules(model: nn.Module) -> list[nn.Module]:
    """The patch merger(s): ``visual.merger`` plus Qwen3-VL's deepstack mergers."""
    visual = vision_tower(model)
    mods = [visual.merger]
    mods += list(getattr(visual, "deepstack_merger_list", []))
    return mods


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model under DDP / DeepSpeed / peft wrappers."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def set_trainable(model: nn.Module, *, freeze_vision_tower: bool = True, train_merger: bool = True,
                  train_language_model: bool = True) -> dict[str, int]:
    """Set ``requires_grad`` per part; returns the trainable/frozen parameter counts.

    The language model (and ``lm_head``) trains unless ``train_language_model`` is False (LoRA sets it False
    and lets peft mark the adapter weights trainable). The vision transformer is frozen unless
    ``freeze_vision_tower`` is False; the merger trains when ``train_merger`` is True.
    """
    visual = vision_tower(model)
    vision_ids = {id(p) for p in visual.parameters()}
    merger_ids = {id(p) for m in merger_modules(model) for p in m.parameters()}
    for p in model.parameters():
        if id(p) in merger_ids:
            p.requires_grad_(train_merger)
        elif id(p) in vision_ids:
            p.requires_grad_(not freeze_vision_tower)
        else:
            p.requires_grad_(train_language_model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "frozen": total - trainable}


def merger_names(model: nn.Module) -> list[str]:
    """Qualified names of the patch merger(s) in ``model`` (as ``named_modules`` spells them)."""
    mergers = {id(m) for m in merger_modules(model)}
    return [name for name, module in model.named_modules() if id(module) in mergers]


def apply_lora(model: nn.Module, *, r: int = 16, alpha: int = 32, dropout: float = 0.05,
               target_modules: list[str] | None = None, modules_to_save: list[str] | None = None) -> nn.Module:
    """Wrap ``model`` with a peft LoRA adapter on the language model's linear layers only.

    The vision tower's own linear layers share names (``qkv``/``proj``, ``gate_proj``...), so targets are
    given as a regex anchored at the language model (``model.language_model.layers``). ``modules_to_save``
    (full names) train as copies that the adapter owns: disabling the adapter restores the originals.
    """
    from peft import LoraConfig, get_peft_model

    names = "|".join(target_modules or DEFAULT_LORA_TARGETS)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=rf".*language_model.*\.({names})$",
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_policy(name_or_path: str, *, dtype: str = "bfloat16", attn_implementation: str | None = None,
                freeze_vision_tower: bool = True, train_merger: bool = True, use_lora: bool = False,
                lora_kwargs: dict[str, Any] | None = None, gradient_checkpointing: bool = False,
                trust_remote_code: bool = False, revision: str | None = None) -> tuple[nn.Module, Any]:
    """Load ``(model, processor)`` from a local folder or a Hub id (at ``revision``: a branch, tag or commit;
    None = the default branch) and prepare it for RL.

    ``dtype`` is one of bfloat16 | float16 | float32 | auto. Raises with the path and what to do when the
    folder is not a Qwen-VL checkpoint.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "revision": revision}
    kwargs["dtype"] = "auto" if dtype == "auto" else DTYPES[dtype]
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(name_or_path, **kwargs)
        processor = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as err:
        raise OSError(f"could not load a model from {name_or_path!r}: {err}. Pass a local folder holding "
                      "config.json + weights + processor files, or a Hub id reachable from this machine "
                      "(build an offline one with `timegrpo tiny --out DIR`).") from err
    return prepare_policy(model, freeze_vision_tower=freeze_vision_tower, train_merger=train_merger,
                          use_lora=use_lora, lora_kwargs=lora_kwargs,
                          gradient_checkpointing=gradient_checkpointing), processor


def prepare_policy(model: nn.Module, *, freeze_vision_tower: bool = True, train_merger: bool = True,
                   use_lora: bool = False, lora_kwargs: dict[str, Any] | None = None,
                   gradient_checkpointing: bool = False) -> nn.Module:
    """Freeze/unfreeze parts, add LoRA, enable gradient checkpointing; returns the (possibly wrapped) model."""
    set_trainable(model, freeze_vision_tower=freeze_vision_tower, train_merger=train_merger,
                  train_language_model=not use_lora)
    if gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x (the old name warns)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    if use_lora:
        model = apply_lora(model, **(lora_kwargs or {}), modules_to_save=merger_names(model) if train_merger else None)
    return model


def is_sharded(model: nn.Module) -> bool:
    """True when ``model``'s weights are partitioned by DeepSpeed ZeRO-3 (each process holds a slice)."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def make_reference(model: nn.Module, *, beta: float, use_lora: bool,
                   load: Callable[[], nn.Module] | None = None) -> nn.Module | None:
    """A frozen reference policy, or None when it is not needed.

    None when ``beta == 0`` (no KL term) and when LoRA is on (the reference is the adapter-disabled policy,
    see :func:`reference_context`). Otherwise a deep copy in eval mode with no gradients; when the policy is
    sharded (ZeRO-3) a copy would hold slices without DeepSpeed's hooks, so ``load()`` (a fresh load of the
    policy's checkpoint, sharded as it loads) gives the reference instead.
    """
    if beta == 0 or use_lora:
        return None
    if is_sharded(model):
        if load is None:
            raise ValueError("the policy's weights are sharded (DeepSpeed ZeRO-3): a copy cannot be the reference; "
                             "pass load_reference (a fresh load of the policy's checkpoint) to the trainer")
        ref = load()
    else:
        import copy

        ref = copy.deepcopy(unwrap(model))
    ref.eval().requires_grad_(False)
    return ref


def load_frozen(name_or_path: str, *, dtype: str = "bfloat16", attn_implementation: str | None = None,
                trust_remote_code: bool = False) -> nn.Module:
    """A model that never trains (a reference, an OPD teacher): loaded as :func:`load_policy` loads, in eval
    mode with no gradients."""
    model, _ = load_policy(name_or_path, dtype=dtype, attn_implementation=attn_implementation,
                           trust_remote_code=trust_remote_code)
    model.eval().requires_grad_(False)
    return model


#: Video-processor settings the teacher's vision tower must share: it encodes the student's video patches.
SHARED_VIDEO_SETTINGS = ("patch_size", "temporal_patch_size", "merge_size")


def _tokenizer(processor: Any) -> Any:
    return getattr(processor, "tokenizer", processor)


def tokenizer_mismatches(student: Any, teacher: Any) -> list[str]:
    """What a teacher's processor (or tokenizer) does not share with the student's, in words; empty when it
    shares all of it.

    The teacher of Video-OPD scores the student's own token ids (prompt, video placeholders and completion) in
    one forward, so it needs: the same vocabulary (token -> id, added tokens included), the same special tokens
    (``special_tokens_map``: bos/eos/pad/...; each added token's special flag) and, for a video model, the same
    ``patch_size``, ``temporal_patch_size`` and ``merge_size`` of the video processor (its vision tower reads the
    student's patches and must produce one feature per video placeholder). Compared by value, never by object.
    """
    a, b = _tokenizer(student), _tokenizer(teacher)
    out: list[str] = []
    va, vb = a.get_vocab(), b.get_vocab()
    if va != vb:
        differ = sorted(t for t in set(va) | set(vb) if va.get(t) != vb.get(t))
        shown = ", ".join(f"{t!r}: {va.get(t)} vs {vb.get(t)}" for t in differ[:3])
        out.append(f"vocabulary: {len(va)} vs {len(vb)} tokens, {len(differ)} with another id or missing ({shown})")
    sa, sb = dict(a.special_tokens_map), dict(b.special_tokens_map)
    if sa != sb:
        roles = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
        out.append("special tokens: " + ", ".join(f"{k} {sa.get(k)!r} vs {sb.get(k)!r}" for k in roles))
    flags_a = {t.content: t.special for t in a.added_tokens_decoder.values()}
    flags_b = {t.content: t.special for t in b.added_tokens_decoder.values()}
    flagged = sorted(t for t in set(flags_a) & set(flags_b) if flags_a[t] != flags_b[t])
    if flagged:
        out.append(f"added tokens special in one only: {', '.join(map(repr, flagged[:5]))}")
    pa, pb = getattr(student, "video_processor", None), getattr(teacher, "video_processor", None)
    if pa is not None and pb is not None:
        diffs = [f"{k} {getattr(pa, k, None)} vs {getattr(pb, k, None)}" for k in SHARED_VIDEO_SETTINGS
                 if getattr(pa, k, None) != getattr(pb, k, None)]
        if diffs:
            out.append("video processor: " + ", ".join(diffs))
    return out


def check_same_tokenizer(student: Any, teacher: Any, *, student_name: str, teacher_name: str) -> None:
    """Raise :class:`timegrpo.config.ConfigError` naming both models when the teacher's processor does not
    share the student's tokens (:func:`tokenizer_mismatches`)."""
    from timegrpo.config.core import ConfigError

    problems = tokenizer_mismatches(student, teacher)
    if problems:
        raise ConfigError(
            f"train.teacher_model_name_or_path: the teacher {teacher_name!r} does not share the tokenizer of the "
            f"student {student_name!r} ({'; '.join(problems)}); Video-OPD's teacher scores the student's own "
            "token ids, so pick a teacher of the same family and tokenizer (e.g. Qwen3-VL-32B for a Qwen3-VL-8B "
            "student)")


def merged_lora_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor] | None,
                           gather: Callable[[list[nn.Parameter]], AbstractContextManager[Any]] = lambda ps: nullcontext(),
                           ) -> dict[str, torch.Tensor] | None:
    """The ``from_pretrained`` state dict of a peft LoRA ``model`` from its full ``state_dict`` (peft keys).

    Each adapted weight becomes ``W + delta`` (peft's own ``get_delta_weight``: ``B A`` times the scaling),
    computed one layer at a time on the adapter's device and merged on the CPU, so the device never holds more
    than one layer's delta; a ``modules_to_save`` module (the merger) is its trained copy; peft's key prefixes go. ``gather(params)`` makes one layer's adapter whole (DeepSpeed ZeRO-3 shards it): every
    process calls this function, and a process without the state dict (None) only takes part in the gathers.
    """
    from peft.tuners.lora import LoraLayer

    adapter = model.active_adapter
    out = dict(state_dict) if state_dict is not None else None
    for name, module in model.named_modules():
        if not (isinstance(module, LoraLayer) and adapter in module.lora_A):
            continue
        with gather([*module.lora_A[adapter].parameters(), *module.lora_B[adapter].parameters()]):
            if out is not None:
                key = f"{name}.base_layer.weight"
                weight = out[key].detach()
                delta = module.get_delta_weight(adapter).detach().to("cpu", torch.float32)
                out[key] = (weight.to("cpu", torch.float32) + delta).to(weight.dtype)
    if out is None:
        return None
    saved = f".modules_to_save.{adapter}."
    return {key.removeprefix("base_model.model.").replace(".base_layer.", ".").replace(saved, "."): value
            for key, value in out.items() if ".lora_" not in key and ".original_module." not in key}


@contextmanager
def reference_context(policy: nn.Module, reference: nn.Module | None) -> Iterator[nn.Module]:
    """Yield the module that computes reference log-probs: ``reference``, or the policy with LoRA disabled."""
    if reference is not None:
        yield reference
        return
    base = policy.module if hasattr(policy, "module") else policy
    ctx = base.disable_adapter() if hasattr(base, "disable_adapter") else nullcontext()
    with ctx:
        yield policy
