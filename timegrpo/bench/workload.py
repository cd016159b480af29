"""What a benchmark run trains on: its settings, the model folder, the synthetic videos and the frame cache.

Both trainers load the model from one saved folder and read the same frames: synthetic mp4 files
(:mod:`timegrpo.data.synthetic`) of exactly ``frames / 2`` seconds at 2 fps and ``size x size`` pixels, so every
prompt carries the same number of visual tokens, ``frames/2 * (size/28)^2``; the frames are sampled unresized
and decoded once into an on-disk :class:`timegrpo.data.video.FrameCache` before the timed steps (the cold decode
and cached read of each video are measured on the way, see :mod:`timegrpo.bench.pipeline`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BenchConfig:
    """One benchmark workload (``timegrpo bench`` options)."""

    model: str | None = field(default=None,
                              metadata={"help": "a saved Qwen-VL folder to benchmark (else --tiny/--arch)"})
    tiny: str = field(default="qwen2_5_vl",
                      metadata={"help": "tiny model family built offline when no --model/--arch"})
    arch: str | None = field(default=None, metadata={"help": "random-weight published architecture: qwen2_5_vl_3b | "
                                                             "qwen2_5_vl_7b (timegrpo.bench.arch)"})
    arch_layers: int | None = field(default=None, metadata={"help": "shrink --arch to this many text layers "
                                                                   "(vision depth in proportion)"})
    arch_heads_divisor: int = field(default=1,
                                    metadata={"help": "shrink --arch: divide attention heads (widths follow)"})
    arch_vocab: int | None = field(default=None,
                                   metadata={"help": "shrink --arch: embedding rows (default published)"})
    frames: int = field(default=16, metadata={"help": "frames per video (even; 2 fps, so frames/2 seconds)"})
    size: int = field(default=56, metadata={"help": "frame width = height in pixels (multiple of 28)"})
    prompts: int = field(default=2, metadata={"help": "prompts (videos) per optimiser step"})
    num_generations: int = field(default=4, metadata={"help": "completions per prompt (G)"})
    completion_len: int = field(default=32, metadata={"help": "tokens per completion, fixed (min = max new tokens)"})
    steps: int = field(default=4, metadata={"help": "timed optimiser steps (medians over these)"})
    warmup: int = field(default=1, metadata={"help": "untimed steps before them"})
    beta: float = field(default=0.04, metadata={"help": "KL coefficient (0 = no reference forward)"})
    loss_type: str = field(default="bnpo", metadata={"help": "loss aggregation, same name on both sides"})
    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate (both sides)"})
    template: str = field(default="think", metadata={"help": "prompt template"})
    dtype: str = field(default="auto", metadata={"help": "float32 | bfloat16 | auto (bfloat16 on GPU, float32 on CPU)"})
    seed: int = field(default=0, metadata={"help": "seed of the data, the model and the sampling"})
    vs_trl: bool = field(default=False, metadata={"help": "run TRL's GRPOTrainer on the same work, step for step"})
    sequential: bool = field(default=False, metadata={"help": "with vs_trl: run all timegrpo steps, free that trainer, "
                                                              "then TRL's (when both do not fit in memory at once)"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in the backward "
                                                                          "pass, on both sides"})
    share_prompt_prefix: bool = field(default=True, metadata={"help": "timegrpo's train.share_prompt_prefix: each "
                                                                      "prompt computed once for its G completions"})
    compare_prefix_off: bool = field(default=False, metadata={
        "help": "also time timegrpo with share_prompt_prefix off, step for step with the other trainers (with "
                "sequential: after them, each trainer freed before the next), and report both"})
    target_ratio: float = field(default=0.7, metadata={"help": "the timegrpo/TRL step-time ratio this workload "
                                                               "should stay at or under (reported as met or not)"})
    label: str = field(default="", metadata={"help": "name of the workload in reports"})

    def __post_init__(self) -> None:
        if self.frames < 4 or self.frames % 2:
            raise ValueError(f"--frames must be even and >= 4 (Qwen-VL merges frame pairs), got {self.frames}")
        if self.size < 28 or self.size % 28:
            raise ValueError(f"--size must be a multiple of 28 (patch 14 x merge 2), got {self.size}")
        for name in ("prompts", "steps", "completion_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ValueError(f"--num-generations must be >= 2 (GRPO's group baseline), got {self.num_generations}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if self.compare_prefix_off and not self.share_prompt_prefix:
            raise ValueError("--compare-prefix-off compares against --share-prompt-prefix true: drop one of them")
        if self.model and self.arch:
            raise ValueError("pass one of --model and --arch")
        from timegrpo.bench.arch import ARCHS
        from timegrpo.models.tiny import FAMILIES

        if self.arch is not None and self.arch not in ARCHS:
            raise ValueError(f"--arch {self.arch!r}: known architectures are {', '.join(ARCHS.names())}")
        if self.tiny not in FAMILIES:
            raise ValueError(f"--tiny {self.tiny!r}: known families are {', '.join(FAMILIES.names())}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"--dtype must be auto, float32 or bfloat16, got {self.dtype!r}")

    @property
    def visual_tokens(self) -> int:
        """Merged visual tokens per prompt: ``frames/2`` temporal groups of ``(size/28)^2``.

        >>> BenchConfig(frames=72, size=280).visual_tokens
        3600
        """
        return self.frames // 2 * (self.size // 28) ** 2

    @property
    def total_steps(self) -> int:
        return self.warmup + self.steps

    def resolved_dtype(self) -> str:
        import torch

        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if torch.cuda.is_available() else "float32"

    def model_name(self) -> str:
        if self.model:
            return str(self.model)
        if self.arch:
            shrunk = self.arch_layers or self.arch_heads_divisor != 1 or self.arch_vocab
            return f"{self.arch} (random weights{', shrunk' if shrunk else ''})"
        return f"tiny {self.tiny}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Workload:
    """A prepared workload: the model folder, the training samples, the frame sampling and cache."""

    config: BenchConfig
    model_path: Path
    samples: list[Any]
    sampling: Any  # timegrpo.data.video.VideoSampling
    cache_dir: Path
    root: Path
    model_info: dict[str, Any] = field(default_factory=dict)

    def video_source(self) -> Any:
        from timegrpo.data.source import video_source

        return video_source(self.sampling, cache_dir=str(self.cache_dir))


def prepare_model(cfg: BenchConfig, root: Path) -> tuple[Path, dict[str, Any]]:
    """The model folder to benchmark (built and saved under ``root`` for --tiny/--arch) and a description."""
    pixels = {"min_pixels": min(4 * 28 * 28, cfg.size**2), "max_pixels": max(64 * 28 * 28, cfg.size**2)}
    if cfg.model:
        path = Path(cfg.model)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"--model {path}: no config.json there; pass a saved Qwen-VL folder "
                                    "(e.g. from `timegrpo tiny --out DIR`) or use --tiny/--arch")
        return path, {"source": "folder"}
    if cfg.arch:
        from timegrpo.bench.arch import ARCHS, save_arch_model, shrink

        shapes = ARCHS.get(cfg.arch)
        if cfg.arch_layers or cfg.arch_heads_divisor != 1 or cfg.arch_vocab:
            shapes = shrink(shapes, layers=cfg.arch_layers, heads_divisor=cfg.arch_heads_divisor,
                            vocab_size=cfg.arch_vocab)
        pixels["max_pixels"] = max(16384 * 28 * 28, cfg.size**2)
        path = save_arch_model(shapes, root / "model", dtype=cfg.resolved_dtype(), seed=cfg.seed, **pixels)
        return path, {"source": "arch", "shapes": asdict(shapes)}
    from timegrpo.models.tiny import save_tiny_vlm

    return save_tiny_vlm(cfg.tiny, root / "model", seed=cfg.seed, **pixels), {"source": "tiny"}


def prepare_data(cfg: BenchConfig, root: Path, patch_size: int = 14) -> tuple[list[Any], Any]:
    """``warmup + steps`` steps' worth of synthetic videos (each step sees new prompts, so the two trainers
    never differ by which prompts they saw) and the frame sampling that feeds them unresized."""
    from timegrpo.data.synthetic import SynthConfig, generate, load_split
    from timegrpo.data.video import VideoSampling

    seconds = cfg.frames // 2
    synth = SynthConfig(n=cfg.prompts * cfg.total_steps, seed=cfg.seed, val_size=0, test_size=0, size=cfg.size,
                        fps=2, min_duration=seconds, max_duration=seconds)
    generate(synth, root / "synth")
    sampling = VideoSampling(fps=2.0, min_pixels=cfg.size**2, max_pixels=cfg.size**2, total_pixels=None,
                             image_patch_size=patch_size)
    return load_split(root / "synth", "train"), sampling


def prepare(cfg: BenchConfig, root: Path) -> Workload:
    path, info = prepare_model(cfg, root)
    samples, sampling = prepare_data(cfg, root)
    return Workload(cfg, path, samples, sampling, root / "frames", root, info)
