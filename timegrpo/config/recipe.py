"""The recipe: ``RecipeConfig(method, model, data, train, sft)``, one dataclass per YAML section.

Every field has a type, a default and a help string; ``__post_init__`` validates and raises :class:`ConfigError`
naming the field (``train.beta: must be >= 0, got -1``). Names follow TRL's ``GRPOConfig`` /
``TrainingArguments`` where the meaning is the same; the departures are said in the help strings
(notably ``per_device_train_batch_size`` counts **prompts**, not completions).

One recipe serves both commands: ``timegrpo train`` reads ``model``, ``data``, ``train`` (:class:`RLConfig`;
``method`` picks the objective: ``grpo``, ``gspo``, ``cispo``, ``sapo`` or ``opd``) and ``masking``
(:class:`timegrpo.config.curriculum.MaskingConfig`); ``timegrpo sft`` reads ``model``, ``data`` and ``sft``;
``timegrpo curriculum timerft`` reads ``curriculum`` (:class:`timegrpo.config.curriculum.CurriculumConfig`) and
runs ``timegrpo train`` once per round.
Loading, overrides and serialisation are the shared mechanism of :mod:`timegrpo.config.core`.

>>> cfg = RecipeConfig()
>>> cfg.method, cfg.train.loss_type, cfg.data.total_pixels
('grpo', 'dapo', 2809856)
>>> RLConfig(beta=-1.0)
Traceback (most recent call last):
...
timegrpo.config.core.ConfigError: train.beta: must be >= 0, got -1.0
>>> cfg = load_recipe(None, ["--beta", "0.04", "--reward_funcs", "iou,format", "--data.total_pixels=3584*28*28"])
>>> cfg.train.beta, cfg.train.reward_funcs, cfg.data.total_pixels
(0.04, ['iou', 'format'], 2809856)
>>> load_recipe(None, ["--betta", "0"])
Traceback (most recent call last):
...
timegrpo.config.core.ConfigError: unknown option --betta; did you mean --beta?
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from timegrpo.config.core import check, check_choice, from_dict, load, opt, opt_factory, section
from timegrpo.config.core import check_registered as _registered
from timegrpo.config.curriculum import CurriculumConfig, MaskingConfig

#: Scheduler names accepted by ``transformers.get_scheduler`` without extra keyword arguments.
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
TORCH_DTYPES = ("bfloat16", "float16", "float32", "auto")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
ON_BAD = ("error", "skip", "clip")
REPORT_TO = ("wandb", "none")
#: ``method`` -> the per-token objective registered in :data:`timegrpo.algos.losses.OBJECTIVES`.
METHOD_OBJECTIVES = {"grpo": "clipped", "gspo": "gspo", "cispo": "cispo", "sapo": "sapo", "opd": "opd"}
#: Methods defined at one importance-sampling level only (``train.importance_sampling_level`` must be it or null).
METHOD_FIXED_LEVEL = {"gspo": "sequence", "opd": "token"}
#: TRL ``loss_type`` values that name an objective, not an aggregation: -> (our method, the loss_type TRL pairs it with).
TRL_OBJECTIVE_LOSS_TYPES = {"cispo": ("cispo", "dapo"), "sapo": ("sapo", "grpo")}

#: Linear layers of the Qwen language model that LoRA adapts by default (models.loading uses the same list).
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelConfig:
    """Section ``model``: the policy to load and what of it trains."""

    SECTION: ClassVar[str] = "model"

    model_name_or_path: str = opt(
        "Qwen/Qwen2.5-VL-7B-Instruct", "Hub id or local path of a Qwen2-VL, Qwen2.5-VL or Qwen3-VL checkpoint."
    )
    revision: str | None = opt(None, "Hub revision (branch, tag or commit) of the checkpoint; None = main.")
    torch_dtype: str = opt("bfloat16", "Weights dtype: bfloat16, float16, float32 or auto (the checkpoint's).")
    attn_implementation: str | None = opt(
        None,
        "Attention kernel: eager, sdpa, flash_attention_2, flash_attention_3, flex_attention, or a Hub kernel "
        "'org/repo'; None = transformers' default (sdpa).",
    )
    freeze_vision_tower: bool = opt(True, "Freeze the vision transformer (Time-R1). Its patch merger: train_merger.")
    train_merger: bool = opt(True, "Train the vision-to-language patch merger (projector) even when the tower is frozen.")
    use_lora: bool = opt(False, "Train LoRA adapters on the language model instead of its full weights (peft).")
    lora_r: int = opt(64, "LoRA rank.")
    lora_alpha: int = opt(128, "LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = opt(0.05, "Dropout on the LoRA branch.")
    lora_target_modules: list[str] = opt_factory(
        lambda: list(DEFAULT_LORA_TARGETS),
        "Module names that get adapters, matched inside the language model only (never the vision tower).",
    )
    gradient_checkpointing: bool = opt(False, "Recompute activations in the backward pass to save memory.")
    trust_remote_code: bool = opt(False, "Allow checkpoints that ship their own Python code (off: safer).")

    def __post_init__(self) -> None:
        s = self.SECTION
        check(bool(self.model_name_or_path), f"{s}.model_name_or_path", "must not be empty")
        check_choice(f"{s}.torch_dtype", self.torch_dtype, TORCH_DTYPES)
        if self.attn_implementation is not None and "/" not in self.attn_implementation:
            check_choice(f"{s}.attn_implementation", self.attn_implementation, ATTN_IMPLEMENTATIONS)
        check(self.lora_r >= 1, f"{s}.lora_r", f"must be >= 1, got {self.lora_r}")
        check(self.lora_alpha > 0, f"{s}.lora_alpha", f"must be > 0, got {self.lora_alpha}")
        check(0 <= self.lora_dropout < 1, f"{s}.lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if self.use_lora:
            check(bool(self.lora_target_modules), f"{s}.lora_target_modules", "must not be empty with use_lora")


@dataclass
class DataConfig:
    """Section ``data``: annotations, video sampling and the prompt."""

    SECTION: ClassVar[str] = "data"

    train_file: str | None = opt(None, "Training annotation file (any format timegrpo reads; see `format`).")
    eval_file: str | None = opt(None, "Held-out annotation file evaluated during/after training; None = none.")
    format: str | None = opt(None, "Annotation format name (timegrpo.data.formats.READERS); None = auto-detect.")
    durations: str | None = opt(
        None, "Duration file for formats without durations (Charades-STA txt: Charades_v1_*.csv)."
    )
    video_dir: str | None = opt(None, "Folder holding the videos; relative video paths in the annotations resolve here.")
    on_bad: str = opt("error", "Bad annotation records: error (stop), skip (drop and count) or clip (fix and count).")
    drop_duplicates: bool = opt(
        False, "Drop exact duplicate records (same video, query and windows), counted; official benchmarks keep them."
    )
    fps: float = opt(2.0, "Frames sampled per second of video (Time-R1: 2). Ignored when nframes is set.")
    nframes: int | None = opt(None, "Sample exactly this many frames per video instead of using fps.")
    min_frames: int | None = opt(None, "Fewest frames sampled from any video; None = qwen-vl-utils' default (4).")
    max_frames: int = opt(768, "Most frames sampled from any video (Time-R1: 768).")
    min_pixels: int = opt(16 * 28 * 28, "Lower bound on pixels per frame (Time-R1: 16*28*28).")
    max_pixels: int | None = opt(None, "Upper bound on pixels per frame; None = qwen-vl-utils' default.")
    total_pixels: int | None = opt(
        3584 * 28 * 28, "Pixel budget of a whole video, frames resized to fit (Time-R1: 3584*28*28); None = no budget."
    )
    prefer_duration: str = opt(
        "annotation", "Duration used when the annotation and the decoded video disagree: annotation or decoded."
    )
    duration_tolerance: float = opt(
        0.5, "Seconds of annotated-vs-decoded duration difference reported as a mismatch."
    )
    max_duration_mismatch: float = opt(
        0.1, "A video whose decoded duration differs from the annotated one by more than this fraction of the "
        "annotated duration (and more than duration_tolerance) is bad (on_bad: error stops, skip leaves it out, "
        "counted); 0 = never."
    )
    frame_cache_dir: str | None = opt(None, "Cache decoded, resized frames here (per video and settings); None = off.")
    prompt_template: str = opt("think", "Prompt template name: think (reason, then answer) or no_think (answer only).")
    max_train_samples: int | None = opt(None, "Use only the first N training samples (debugging); None = all.")
    max_eval_samples: int | None = opt(None, "Use only the first N evaluation samples; None = all.")
    num_workers: int = opt(
        0, "Background threads that read, sample and process the videos of the next micro-batches while the "
        "current one trains (same inputs as 0); 0 = in the training loop, when needed."
    )

    def __post_init__(self) -> None:
        s = self.SECTION
        check_choice(f"{s}.on_bad", self.on_bad, ON_BAD)
        check(self.fps > 0, f"{s}.fps", f"must be > 0, got {self.fps}")
        if self.nframes is not None:
            check(self.nframes >= 2, f"{s}.nframes", f"must be >= 2 (Qwen-VL groups frames in pairs), got {self.nframes}")
        check(self.max_frames >= 1, f"{s}.max_frames", f"must be >= 1, got {self.max_frames}")
        if self.min_frames is not None:
            check(1 <= self.min_frames <= self.max_frames, f"{s}.min_frames",
                   f"need 1 <= min_frames <= max_frames, got {self.min_frames} and {self.max_frames}")
        check_choice(f"{s}.prefer_duration", self.prefer_duration, ("annotation", "decoded"))
        check(self.duration_tolerance >= 0, f"{s}.duration_tolerance", f"must be >= 0, got {self.duration_tolerance}")
        check(self.max_duration_mismatch >= 0, f"{s}.max_duration_mismatch",
              f"must be >= 0, got {self.max_duration_mismatch}")
        check(self.min_pixels > 0, f"{s}.min_pixels", f"must be > 0, got {self.min_pixels}")
        for name in ("max_pixels", "total_pixels"):
            value = getattr(self, name)
            if value is not None:
                check(value >= self.min_pixels, f"{s}.{name}", f"must be >= min_pixels ({self.min_pixels}), got {value}")
        check(bool(self.prompt_template), f"{s}.prompt_template", "must not be empty")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            check(value is None or value >= 1, f"{s}.{name}", f"must be >= 1 or null, got {value}")
        check(self.num_workers >= 0, f"{s}.num_workers", f"must be >= 0, got {self.num_workers}")

    def video_sampling_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`timegrpo.data.video.VideoSampling` (``fps`` dropped when ``nframes`` is set).

        >>> DataConfig(nframes=16).video_sampling_kwargs()["fps"] is None
        True
        """
        return {
            "fps": None if self.nframes is not None else self.fps,
            "nframes": self.nframes,
            "min_frames": self.min_frames,
            "max_frames": self.max_frames,
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "total_pixels": self.total_pixels,
            "duration_tolerance": self.duration_tolerance,
            "max_duration_mismatch": self.max_duration_mismatch,
            "prefer_duration": self.prefer_duration,
        }


@dataclass
class OptimConfig:
    """Fields shared by ``train`` and ``sft``: optimiser, schedule, batching, checkpoints and logging."""

    SECTION: ClassVar[str] = "train"

    learning_rate: float = opt(1e-6, "Peak AdamW learning rate.")
    lr_scheduler_type: str = opt("linear", f"Schedule after warm-up: {', '.join(LR_SCHEDULERS)}.")
    warmup_ratio: float = opt(0.0, "Share of the optimiser steps spent warming the learning rate up from 0.")
    weight_decay: float = opt(0.0, "AdamW weight decay.")
    adam_beta1: float = opt(0.9, "AdamW beta1.")
    adam_beta2: float = opt(0.999, "AdamW beta2.")
    adam_epsilon: float = opt(1e-8, "AdamW epsilon.")
    max_grad_norm: float = opt(1.0, "Clip the global gradient norm to this; 0 = no clipping.")
    num_train_epochs: float = opt(1.0, "Passes over the training set (ignored when max_steps > 0).")
    max_steps: int = opt(-1, "Optimiser steps to run; -1 = derive from num_train_epochs.")
    per_device_train_batch_size: int = opt(
        1, "Prompts (samples) per device per micro-batch. Unlike TRL >= 0.15 this counts prompts, not completions."
    )
    gradient_accumulation_steps: int = opt(1, "Micro-batches accumulated per optimiser step.")
    seed: int = opt(42, "Seed of every random generator (data order, sampling, initialisation).")
    output_dir: str = opt("outputs/timegrpo", "Where checkpoints, the resolved config and logs are written.")
    logging_steps: int = opt(1, "Log metrics every N optimiser steps.")
    save_steps: int = opt(500, "Save a checkpoint every N optimiser steps; 0 = only at the end.")
    save_total_limit: int | None = opt(None, "Keep at most N checkpoints (oldest deleted); None = keep all.")
    resume_from_checkpoint: str | None = opt(None, "Checkpoint folder to resume from (exact: model, optimiser, RNG, data).")
    report_to: str = opt("none", "Logger: wandb (also offline, WANDB_MODE=offline) or none.")
    run_name: str | None = opt(None, "Run name for the logger; None = the output_dir's name.")
    bf16: bool = opt(False, "bfloat16 mixed precision (Accelerate's mixed_precision='bf16').")
    low_precision_updates: bool = opt(
        False, "Let AdamW update bf16/fp16 weights in place, with no fp32 master copy (refused by default: updates "
        "below the weights' resolution round away, most of them at lr 1e-6). Saves memory; for benchmarks that "
        "match another trainer's pure-bf16 setup, not for training runs.")
    eval_steps: int = opt(
        0, "Evaluate on data.eval_file (first data.max_eval_samples) every N optimiser steps and after the last, as "
        "`timegrpo eval` does (greedy, same parser and metrics), logging eval/mIoU, eval/R1@0.5, ...; 0 = never."
    )
    per_device_eval_batch_size: int = opt(8, "Prompts per generate call of the evaluation (per process).")
    eval_max_new_tokens: int = opt(1024, "Completion token limit of the evaluation (`timegrpo eval`'s default).")
    push_to_hub: bool = opt(False, "Upload the final model, processor, recipe and model card to hub_model_id.")
    hub_model_id: str | None = opt(None, "Hub repository id ('user/name') for push_to_hub.")

    def _check_optim(self) -> None:
        s = self.SECTION
        check(self.learning_rate >= 0, f"{s}.learning_rate", f"must be >= 0, got {self.learning_rate}")
        check_choice(f"{s}.lr_scheduler_type", self.lr_scheduler_type, LR_SCHEDULERS)
        check(0 <= self.warmup_ratio <= 1, f"{s}.warmup_ratio", f"must be in [0, 1], got {self.warmup_ratio}")
        check(self.weight_decay >= 0, f"{s}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            check(0 <= value < 1, f"{s}.{name}", f"must be in [0, 1), got {value}")
        check(self.adam_epsilon > 0, f"{s}.adam_epsilon", f"must be > 0, got {self.adam_epsilon}")
        check(self.max_grad_norm >= 0, f"{s}.max_grad_norm", f"must be >= 0, got {self.max_grad_norm}")
        check(self.num_train_epochs > 0, f"{s}.num_train_epochs", f"must be > 0, got {self.num_train_epochs}")
        check(self.max_steps == -1 or self.max_steps >= 1, f"{s}.max_steps", f"must be -1 or >= 1, got {self.max_steps}")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps",
                     "per_device_eval_batch_size", "eval_max_new_tokens"):
            value = getattr(self, name)
            check(value >= 1, f"{s}.{name}", f"must be >= 1, got {value}")
        check(self.save_steps >= 0, f"{s}.save_steps", f"must be >= 0, got {self.save_steps}")
        check(self.eval_steps >= 0, f"{s}.eval_steps", f"must be >= 0, got {self.eval_steps}")
        limit = self.save_total_limit
        check(limit is None or limit >= 1, f"{s}.save_total_limit", f"must be >= 1 or null, got {limit}")
        check(bool(self.output_dir), f"{s}.output_dir", "must not be empty")
        check_choice(f"{s}.report_to", self.report_to, REPORT_TO)
        if self.push_to_hub:
            check(bool(self.hub_model_id), f"{s}.hub_model_id", "is required with push_to_hub: true ('user/name')")

    def __post_init__(self) -> None:
        self._check_optim()


@dataclass
class RLConfig(OptimConfig):
    """Section ``train``: the RL loop (GRPO and Video-OPD). TRL names where the meaning is the same."""

    SECTION: ClassVar[str] = "train"

    shuffle_dataset: bool = opt(True, "Shuffle the training samples each epoch (seeded).")
    num_generations: int = opt(
        8, "Completions sampled per prompt (G). GRPO needs >= 2; Video-OPD (method opd) must use 1.")
    num_iterations: int = opt(
        1, "Optimiser passes over each batch of rollouts (mu). > 1 makes the ratio rho != 1 and clipping act."
    )
    beta: float = opt(
        0.0, "KL coefficient to the reference model (Time-R1: 0.04). 0 = no reference model is loaded."
    )
    kl_estimator: str = opt("k3", "Per-token KL estimator: k1 (lp - lr), k2 ((lp - lr)^2 / 2), k3 (Time-R1, TRL).")
    epsilon: float = opt(0.2, "Lower clip: rho is clipped at 1 - epsilon (and at 1 + epsilon unless epsilon_high).")
    epsilon_high: float | None = opt(
        None, "Upper clip: rho clipped at 1 + epsilon_high (DAPO: 0.28); method cispo caps its weight at "
        "1 + epsilon_high (TRL's cispo epsilon_high is this + 1: TRL's 5.0 is 4.0 here); None = epsilon.")
    importance_sampling_level: str | None = opt(
        None, "Importance ratio: token (one rho per token, GRPO) or sequence (one length-normalised ratio per "
        "completion broadcast to its tokens: GSPO, TRL's importance_sampling_level); null = the method's own "
        "(sequence for gspo, token otherwise). gspo is sequence only, opd token only.")
    use_bias_correction_kl: bool = opt(
        False, "Multiply the per-token KL by the importance ratio rho (TRL's use_bias_correction_kl, on by default "
        "in TRL 1.16). Off = plain k3, as the SPEC and Time-R1. Changes the KL gradient even when rho = 1.")
    sapo_temperature_pos: float = opt(1.0, "Method sapo: gate temperature for tokens with advantage > 0 (SAPO, TRL: 1.0).")
    sapo_temperature_neg: float = opt(
        1.05, "Method sapo: gate temperature for tokens with advantage <= 0 (SAPO, TRL: 1.05).")
    loss_type: str = opt(
        "dapo",
        "Loss aggregation (TRL names): grpo (sequence-mean of token-means), bnpo (token-mean of the micro-batch, "
        "Time-R1), dr_grpo (sum / (N * max_completion_length)), dapo (token-mean of the whole optimiser step).",
    )
    advantage_estimator: str = opt(
        "grpo", "Advantage estimator: grpo ((r - mean) / (std + eps), std set by scale_rewards) or dr_grpo (r - mean)."
    )
    scale_rewards: str = opt(
        "group",
        "Std that divides the centred rewards: group (Time-R1), batch (whole generation batch) or none "
        "(Dr.GRPO). TRL's true/false are group/none.",
    )
    advantage_std_eps: float = opt(1e-4, "Added to the std before dividing (Time-R1 and TRL: 1e-4).")
    advantage_unbiased_std: bool = opt(
        True, "Sample (Bessel-corrected) std as torch.std, Time-R1 and TRL; false = population std."
    )
    temperature: float = opt(1.0, "Sampling temperature of the rollouts.")
    top_p: float = opt(1.0, "Nucleus sampling mass in (0, 1]; 1 = off.")
    top_k: int = opt(0, "Sample among the k most likely tokens; 0 = off.")
    max_completion_length: int = opt(512, "Most tokens generated per completion (Time-R1: 200).")
    mask_truncated_completions: bool = opt(
        False, "Leave completions cut at max_completion_length out of the loss (DAPO)."
    )
    dynamic_sampling: bool = opt(
        False, "DAPO's dynamic sampling: drop groups whose rewards all equal (no gradient) and keep drawing "
        "prompts (whole steps' worth, further along the data order) until the step has per_device_train_batch_size "
        "x gradient_accumulation_steps such groups per process; discarded rollouts are counted and logged.")
    max_resample: int = opt(
        10, "Dynamic sampling: at most this many extra draws per step; then the step trains with the groups it has, "
        "topped up with zero-variance ones, and logs the shortfall.")
    reward_funcs: list[str] = opt_factory(
        lambda: ["tiou", "format"], "Reward functions, summed: registered names, 'package.module:function' paths "
        "(TRL's protocol, e.g. trl.rewards:think_format_reward) or a reward model's folder or Hub id."
    )
    reward_weights: list[float] | None = opt(None, "One weight per reward function; None = all 1.")
    logprob_batch_size: int | None = opt(
        None, "Most completions (rows) in one log-prob forward (old, reference, teacher and the train forward, "
        "whose gradients are unchanged); None = all P*G rows of a micro-batch at once."
    )
    share_prompt_prefix: bool = opt(
        True, "Compute each prompt (its video's tokens included) once for its num_generations completions: one "
        "prefill per prompt in generation, and one packed row per prompt in the old/reference/teacher/train "
        "log-prob forwards (gradients from every completion summed into the shared prompt). The same log-probs, "
        "gradients and samples up to float rounding; false = every completion row repeats its prompt. The "
        "forwards need an attention taking 4-D masks (sdpa, eager); with flash attention only generation shares."
    )
    log_completions: bool = opt(
        False, "Write every sampled completion of a logging step (all its micro-batches, this process's prompts "
        "on the main process) with its qid and reward to output_dir/completions.jsonl."
    )
    teacher_model_name_or_path: str | None = opt(
        None, "Video-OPD teacher (same tokenizer as the policy); required with method: opd."
    )
    opd_ratio_clip: float | None = opt(None, "Video-OPD: clip rho at 1 +- this (paper's option: 0.2); None = off.")
    opd_reward_clamp: float | None = opt(
        None, "Video-OPD: clamp r_t = log pi_teacher - log pi_old to [-c, c] (paper's option: 5); None = off."
    )

    def __post_init__(self) -> None:
        self._check_optim()
        s = self.SECTION
        for name in ("num_generations", "num_iterations", "max_completion_length", "max_resample"):
            value = getattr(self, name)
            check(value >= 1, f"{s}.{name}", f"must be >= 1, got {value}")
        check(self.beta >= 0, f"{s}.beta", f"must be >= 0, got {self.beta}")
        check(0 < self.epsilon < 1, f"{s}.epsilon", f"must be in (0, 1), got {self.epsilon}")
        eps_high = self.epsilon_high
        check(eps_high is None or eps_high > 0, f"{s}.epsilon_high", f"must be > 0 or null, got {eps_high}")
        for name in ("sapo_temperature_pos", "sapo_temperature_neg"):
            value = getattr(self, name)
            check(value > 0, f"{s}.{name}", f"must be > 0, got {value}")
        check(self.scale_rewards in ("group", "batch", "none"), f"{s}.scale_rewards",
               f"{self.scale_rewards!r} is not one of group, batch, none (TRL's true = group, false = none)")
        check(self.advantage_std_eps >= 0, f"{s}.advantage_std_eps", f"must be >= 0, got {self.advantage_std_eps}")
        check(self.temperature > 0, f"{s}.temperature", f"must be > 0, got {self.temperature}")
        check(not self.dynamic_sampling or self.num_generations >= 2, f"{s}.dynamic_sampling",
              f"needs groups to compare: num_generations >= 2, got {self.num_generations}")
        check(0 < self.top_p <= 1, f"{s}.top_p", f"must be in (0, 1], got {self.top_p}")
        check(self.top_k >= 0, f"{s}.top_k", f"must be >= 0, got {self.top_k}")
        check(bool(self.reward_funcs), f"{s}.reward_funcs", "needs at least one reward function")
        if self.reward_weights is not None:
            check(len(self.reward_weights) == len(self.reward_funcs), f"{s}.reward_weights",
                   f"has {len(self.reward_weights)} weights for {len(self.reward_funcs)} reward_funcs "
                   f"({', '.join(self.reward_funcs)})")
        lbs = self.logprob_batch_size
        check(lbs is None or lbs >= 1, f"{s}.logprob_batch_size", f"must be >= 1 or null, got {lbs}")
        clip, clamp = self.opd_ratio_clip, self.opd_reward_clamp
        check(clip is None or 0 < clip < 1, f"{s}.opd_ratio_clip", f"must be in (0, 1) or null, got {clip}")
        check(clamp is None or clamp > 0, f"{s}.opd_reward_clamp", f"must be > 0 or null, got {clamp}")
        self._check_registered()

    def _check_registered(self) -> None:
        s = self.SECTION
        if self.loss_type in TRL_OBJECTIVE_LOSS_TYPES:
            method, aggregation = TRL_OBJECTIVE_LOSS_TYPES[self.loss_type]
            check(False, f"{s}.loss_type", f"TRL's loss_type {self.loss_type!r} is an objective here: set method: "
                  f"{method} and loss_type: {aggregation} (the aggregation TRL uses with it)")
        _registered(f"{s}.loss_type", self.loss_type, "timegrpo.algos.aggregate", "AGGREGATIONS")
        _registered(f"{s}.kl_estimator", self.kl_estimator, "timegrpo.algos.kl", "KL_ESTIMATORS")
        _registered(f"{s}.advantage_estimator", self.advantage_estimator, "timegrpo.algos.advantages", "ADVANTAGES")
        if self.importance_sampling_level is not None:
            _registered(f"{s}.importance_sampling_level", self.importance_sampling_level,
                        "timegrpo.algos.importance", "IMPORTANCE_LEVELS")
        if self.advantage_estimator == "dr_grpo":
            check(self.scale_rewards == "none", f"{s}.scale_rewards",
                   f"advantage_estimator dr_grpo divides by no std; set scale_rewards: none (got {self.scale_rewards!r})")


@dataclass
class SFTConfig(OptimConfig):
    """Section ``sft``: the supervised warm start (``timegrpo sft``) on the same data path."""

    SECTION: ClassVar[str] = "sft"

    learning_rate: float = opt(1e-5, "Peak AdamW learning rate.")
    lr_scheduler_type: str = opt("cosine", f"Schedule after warm-up: {', '.join(LR_SCHEDULERS)}.")
    warmup_ratio: float = opt(0.03, "Share of the optimiser steps spent warming the learning rate up from 0.")
    output_dir: str = opt("outputs/timegrpo-sft", "Where checkpoints, the resolved config and logs are written.")
    completion_only_loss: bool = opt(
        True, "Cross-entropy on the answer tokens only (not on the prompt and video tokens)."
    )


@dataclass
class RecipeConfig:
    """A whole recipe: ``method`` plus the ``model``, ``data``, ``train`` (RL), ``sft``, ``masking`` and
    ``curriculum`` sections."""

    method: str = opt(
        "grpo", "Training objective of `timegrpo train`: grpo (PPO-clip: GRPO / Dr.GRPO / DAPO), gspo (sequence-level "
        "ratio), cispo (capped stop-gradient IS weight, MiniMax-M1), sapo (soft gate) or opd (Video-OPD).",
    )
    model: ModelConfig = section(ModelConfig, "The policy: checkpoint, dtype, what trains.")
    data: DataConfig = section(DataConfig, "Annotations, video sampling and prompt.")
    train: RLConfig = section(RLConfig, "The RL loop (timegrpo train).")
    sft: SFTConfig = section(SFTConfig, "The supervised warm start (timegrpo sft).")
    masking: MaskingConfig = section(MaskingConfig, "VideoTG-R1's curriculum masking during timegrpo train (off by "
                                     "default).")
    curriculum: CurriculumConfig = section(CurriculumConfig, "Data rounds of `timegrpo curriculum timerft` (TimeRFT).")

    def __post_init__(self) -> None:
        check_choice("method", self.method, tuple(METHOD_OBJECTIVES))
        for name in ("train", "sft"):
            if getattr(self, name).eval_steps:
                check(bool(self.data.eval_file), f"{name}.eval_steps",
                      "evaluates data.eval_file, which is not set: pass --data.eval_file PATH or set eval_steps: 0")
        level, fixed = self.train.importance_sampling_level, METHOD_FIXED_LEVEL.get(self.method)
        check(fixed is None or level in (None, fixed), "train.importance_sampling_level",
              f"method {self.method!r} is defined at level {fixed!r} only, got {level!r} (set it to null or {fixed})")
        if self.method == "opd":
            check(bool(self.train.teacher_model_name_or_path), "train.teacher_model_name_or_path",
                   "is required with method: opd (the teacher that scores the student's tokens)")
            check(self.train.num_generations == 1, "train.num_generations",
                  f"must be 1 for method: opd, got {self.train.num_generations}: Video-OPD samples one completion "
                  "per prompt and the teacher's per-token log-probs are its reward, so there is no group baseline "
                  "and more samples per prompt only cost rollout time (use more prompts instead: "
                  "per_device_train_batch_size)")
        else:
            check(self.train.num_generations >= 2, "train.num_generations",
                   f"must be >= 2 for method {self.method!r} (the group baseline needs two samples), "
                   f"got {self.train.num_generations}")

    @property
    def objective(self) -> str:
        """The per-token objective (``timegrpo.algos.losses.OBJECTIVES`` name) of ``method``."""
        return METHOD_OBJECTIVES[self.method]


def load_recipe(path: str | Path | None, overrides: Sequence[str] = (), *,
                prefer_section: str | None = None) -> RecipeConfig:
    """Load a recipe (``None``: all defaults), apply ``overrides`` (``['--train.beta', '0', ...]``), validate.

    ``prefer_section`` resolves bare keys present in several sections (``--learning_rate`` is in ``train`` and
    ``sft``; ``timegrpo sft`` prefers ``sft``); without it such a key is an error.
    """
    return load(RecipeConfig, path, overrides, prefer_section=prefer_section, what="recipe")


def recipe_from_dict(data: dict[str, Any], source: str = "<dict>") -> RecipeConfig:
    """A validated recipe from a nested dict shaped like its YAML (e.g. :func:`timegrpo.config.to_dict`'s)."""
    return from_dict(RecipeConfig, data, source)
