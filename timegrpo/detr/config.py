"""GIRL-DETR configuration: a tree of dataclasses loaded from a recipe YAML plus ``--section.key value`` overrides.

A recipe has one mapping per section (``data``, ``model``, ``loss``, ``train``, ``rl``, ``predict``, ``synth``) and a few top
level keys (``name``, ``seed``, ``out_dir``, ``device``, ``threads``). Relative paths in ``data`` are resolved
against ``data.root`` and ``out_dir`` against ``out_root`` (never against the working directory).

>>> cfg = config_from_dict({"data": {"clip_len": 2.0}, "rl": {"p1": 20, "p2": 20, "rho": 0.05}})
>>> cfg.data.clip_len, cfg.model.hidden_dim, cfg.rl.rho
(2.0, 256, 0.05)
>>> apply_overrides(cfg, ["--data.clip_len", "1", "--train.lr", "2e-4", "--temperature", "0.3"]).train.lr
0.0002
>>> cfg.data.clip_len, cfg.rl.temperature
(1.0, 0.3)
>>> apply_overrides(cfg, ["--lr", "1e-3"])
Traceback (most recent call last):
...
ValueError: --lr is ambiguous; write one of: --train.lr, --rl.lr
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help string (lists get a default_factory)."""
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class DataConfig:
    root: str | None = _f(None, "directory that relative paths below are resolved against (e.g. a lighthouse checkout)")
    train: str | None = _f(None, "training annotations (moment_detr jsonl)")
    val: str | None = _f(None, "validation annotations, evaluated during training")
    test: str | None = _f(None, "held-out annotations used by `predict` and the final report")
    annotation_format: str | None = _f("moment_detr", "format name for timegrpo.data.formats (None: auto-detect)")
    video_feat_dirs: list[str] = _f([], "one directory per video feature type, each holding {vid}.npz['features']")
    text_feat_dir: str | None = _f(None, "directory of per-query text features")
    text_file: str = _f("qid{qid}.npz", "text feature file name pattern ({qid} is substituted; TACoS uses '{qid}.npz')")
    video_key: str = _f("features", "array name inside each video .npz")
    text_key: str = _f("last_hidden_state", "array name inside each text .npz")
    clip_len: float = _f(2.0, "seconds per feature clip (2 for QVHighlights, 1 for Charades-STA/TACoS per the spec)")
    max_v_len: int | None = _f(75, "truncate videos to this many clips (None: never)")
    max_q_len: int = _f(32, "truncate queries to this many tokens")
    temporal_encoding: bool = _f(True, "append [i/L, (i+1)/L] to every clip feature (the 'tef')")
    length_tolerance: float = _f(2.0, "clips of disagreement allowed between feature length and duration/clip_len")
    on_bad: str = _f("error", "bad annotation or feature (missing file, length mismatch): error | skip | clip "
                     "(clip repairs windows past the duration and drops what it cannot repair, as skip)")
    cache_videos: int = _f(2048, "how many videos' features to keep in memory (0: none)")

    def __post_init__(self) -> None:
        if self.on_bad not in ("error", "skip", "clip"):
            raise ValueError(f"data.on_bad must be 'error', 'skip' or 'clip', got {self.on_bad!r}")
        if self.clip_len <= 0:
            raise ValueError(f"data.clip_len must be > 0, got {self.clip_len}")
        if "{qid}" not in self.text_file:
            raise ValueError(f"data.text_file must contain '{{qid}}', got {self.text_file!r}")


@dataclass
class ModelConfig:
    hidden_dim: int = _f(256, "model width d")
    nheads: int = _f(8, "attention heads")
    dim_feedforward: int = _f(1024, "FFN width")
    enc_layers: int = _f(3, "encoder layers over [global token, video]")
    dec_layers: int = _f(3, "DAB-style decoder layers")
    num_queries: int = _f(10, "moment queries (anchors)")
    dropout: float = _f(0.1, "dropout inside the transformer")
    input_dropout: float = _f(0.5, "dropout before the first input projection layer")
    n_input_proj: int = _f(2, "layers in each input projection")
    cross_modal_interaction: bool = _f(True, "Cross-Modal Interaction block before the encoder")
    text_guided_gating: bool = _f(True, "Text-Guided Gating on the first decoder layer")
    saliency_head: bool = _f(True, "predict a per-clip saliency score")

    def __post_init__(self) -> None:
        if self.hidden_dim % self.nheads:
            raise ValueError(f"model.hidden_dim {self.hidden_dim} must be divisible by model.nheads {self.nheads}")
        if self.hidden_dim % 2:
            raise ValueError("model.hidden_dim must be even (sine embeddings of center and width)")


@dataclass
class LossConfig:
    cost_span: float = _f(10.0, "matching cost weight of span L1")
    cost_giou: float = _f(1.0, "matching cost weight of -GIoU")
    cost_class: float = _f(4.0, "matching cost weight of -p(foreground)")
    span_coef: float = _f(10.0, "loss weight of span L1 (center/width)")
    giou_coef: float = _f(1.0, "loss weight of 1 - GIoU")
    label_coef: float = _f(4.0, "loss weight of the foreground/background cross-entropy")
    eos_coef: float = _f(0.1, "cross-entropy weight of the no-object class")
    iou_coef: float = _f(1.0, "loss weight of the IoU head (L1 to the detached IoU of each query with its best GT)")
    saliency_coef: float = _f(0.0, "loss weight of the saliency ranking loss (QVHighlights: 1)")
    saliency_margin: float = _f(0.2, "hinge margin of the saliency ranking loss")
    aux_loss: bool = _f(True, "apply the losses to every decoder layer")


@dataclass
class TrainConfig:
    epochs: int = _f(200, "supervised epochs")
    batch_size: int = _f(32, "queries per step")
    lr: float = _f(1e-4, "AdamW learning rate")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    lr_drop: int | None = _f(None, "multiply lr by 0.1 at this epoch (None: never)")
    grad_clip: float = _f(0.1, "max gradient norm (0: no clipping)")
    ema_decay: float = _f(0.999, "EMA decay per step; the EMA weights are evaluated and handed to RL")
    eval_every: int = _f(1, "evaluate on data.val every this many epochs (0: only at the end)")
    resume: bool = _f(True, "continue from out_dir/supervised/last.ckpt when it exists")


@dataclass
class RLConfig:
    epochs: int = _f(40, "RL epochs (the schedule is indexed by epoch)")
    batch_size: int = _f(32, "queries per step")
    lr: float = _f(1e-4, "AdamW learning rate of the heads")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    grad_clip: float = _f(0.1, "max gradient norm (0: no clipping)")
    p1: int = _f(8, "epoch at which the reward-weighted top-3 span loss starts (phase 2)")
    p2: int = _f(12, "epoch at which REINFORCE starts (phase 3); c_S reaches rho here")
    rho: float = _f(0.03, "final weight of the span and REINFORCE losses")
    reinforce_ramp: int = _f(10, "epochs over which c_R ramps from 0 to rho")
    cosine_decay: bool = _f(False, "after both ramps, cosine-decay c_S and c_R to rho * decay_floor")
    decay_floor: float = _f(0.2, "fraction of rho that the cosine decay ends at")
    top1_coef: float = _f(1.0, "weight of the top-1 refinement loss (all phases)")
    top_k: int = _f(3, "queries in the reward-weighted span loss")
    temperature: float = _f(0.5, "policy temperature: softmax(score / temperature) over the queries")
    policy_score: str = _f("prob", "the policy's score: prob (p_fg, as the spec writes it) | logit (fg minus "
                           "no-object logit, which does not saturate once the class head is confident)")
    n_samples: int = _f(3, "REINFORCE samples per query")
    baseline: str = _f("greedy", "REINFORCE baseline: greedy (reward of the argmax query) | group (z-score of all)")
    objective: str = _f("girl", "girl (the three-stage RL loss) | supervised (set losses on the heads: the control)")
    iou_coef: float = _f(1.0, "keep training the IoU head on the changing spans (0: leave it)")
    heads: list[str] = _f(["span_head", "class_head", "iou_head"], "the only modules RL may change")
    init: str | None = _f(None, "supervised checkpoint to start from (None: out_dir/supervised/best.ckpt)")
    eval_every: int = _f(1, "evaluate on data.val every this many epochs (0: only at the end)")

    def __post_init__(self) -> None:
        if self.p2 < self.p1:
            raise ValueError(f"rl.p2 ({self.p2}) must be >= rl.p1 ({self.p1})")
        if self.temperature <= 0:
            raise ValueError("rl.temperature must be > 0")
        if self.policy_score not in ("prob", "logit"):
            raise ValueError(f"rl.policy_score must be prob or logit, got {self.policy_score!r}")


@dataclass
class PredictConfig:
    split: str = _f("test", "which annotation file to predict: train | val | test")
    checkpoint: str | None = _f(None, "checkpoint to load (None: out_dir/rl/final.ckpt, else supervised/best.ckpt)")
    max_windows: int = _f(10, "windows written per query, ranked by score")
    score: str = _f("fg", "ranking score: fg (p foreground, Moment-DETR) | fg_x_iou (times the IoU head)")
    output: str | None = _f(None, "jsonl to write (None: out_dir/predictions_{split}.jsonl)")


#: Query sentences of the synthetic benchmark's concepts (the features carry the meaning, not these words).
CONCEPTS = (
    "a dog runs across the yard", "a woman opens the fridge", "a man rides a bike", "someone pours coffee",
    "a child throws a ball", "the chef chops onions", "a car drives past", "people dance on stage",
    "a cat jumps on the sofa", "a man plays the guitar", "a girl reads a book", "waves hit the shore",
    "a person washes dishes", "fireworks light the sky", "a boy climbs a tree", "a woman ties her shoes",
)


@dataclass
class SynthConfig:
    n_videos: int = _f(600, "videos in all splits together")
    seed: int = _f(0, "random seed (directions, videos, queries)")
    splits: list[float] = _f([0.6, 0.2, 0.2], "fractions of videos in train / val / test")
    clip_len: float = _f(2.0, "seconds per clip")
    min_clips: int = _f(16, "shortest video, in clips")
    max_clips: int = _f(32, "longest video, in clips")
    events_per_video: list[int] = _f([2, 3], "min and max events (= queries) per video")
    repeat_prob: float = _f(0.4, "probability that a video's first concept occurs twice: a query with two "
                            "ground-truth windows (about a third of QVHighlights queries have several)")
    min_event: float = _f(4.0, "shortest event, seconds")
    max_event: float = _f(20.0, "longest event, seconds")
    n_concepts: int = _f(8, "distinct event concepts (at most 16 have names)")
    video_dims: list[int] = _f([48, 16], "one width per video feature type (types are named f0, f1, ...)")
    text_dim: int = _f(32, "text token feature width")
    amplitude: float = _f(1.0, "strength of an event's direction in a fully covered clip")
    noise: float = _f(0.15, "per-clip isotropic noise (per dimension, times sqrt(48/dim))")
    scene: float = _f(0.5, "norm of the per-video constant scene vector")
    text_noise: float = _f(0.2, "noise on the concept token (per dimension, times sqrt(32/dim))")
    min_tokens: int = _f(3, "fewest tokens per query")
    max_tokens: int = _f(6, "most tokens per query")

    def __post_init__(self) -> None:
        if self.n_concepts > len(CONCEPTS):
            raise ValueError(f"n_concepts must be <= {len(CONCEPTS)}")
        lo, hi = self.events_per_video
        if not 1 <= lo <= hi <= self.n_concepts:
            raise ValueError("events_per_video must be [min, max] with 1 <= min <= max <= n_concepts")
        if self.min_event * (hi + 1) > 0.8 * (self.min_clips - 1) * self.clip_len:
            raise ValueError("events do not fit: min_event * max events must be <= 0.8 x the shortest duration")
        if len(self.splits) != 3 or abs(sum(self.splits) - 1) > 1e-6:
            raise ValueError("splits must be three fractions summing to 1")


@dataclass
class DetrConfig:
    name: str = _f("girl_detr", "run name")
    seed: int = _f(2023, "seed of parameter init, shuffling, dropout and RL sampling")
    out_dir: str = _f("runs/girl_detr", "where checkpoints, logs and predictions go")
    out_root: str | None = _f(None, "directory a relative out_dir is resolved against (None: the data root)")
    device: str = _f("auto", "cpu | cuda | auto")
    threads: int = _f(0, "torch CPU threads (0: torch's default)")
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "feature data"})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "architecture"})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"help": "matching and losses"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "supervised stage"})
    rl: RLConfig = field(default_factory=RLConfig, metadata={"help": "gradient-isolated RL stage"})
    predict: PredictConfig = field(default_factory=PredictConfig, metadata={"help": "prediction"})
    synth: SynthConfig = field(default_factory=SynthConfig, metadata={"help": "synthetic benchmark (demo)"})

    def resolve(self, path: str | None, *, what: str = "path") -> Path | None:
        """Resolve a data path against ``data.root``; a relative path with no root is an error."""
        if path is None:
            return None
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        if self.data.root is None:
            raise ValueError(f"{what} {path!r} is relative but data.root is not set; pass --data.root DIR")
        return Path(self.data.root).expanduser() / p

    def run_dir(self) -> Path:
        """``out_dir`` resolved against ``out_root`` (or ``data.root``)."""
        p = Path(self.out_dir).expanduser()
        if p.is_absolute():
            return p
        base = self.out_root or self.data.root
        if base is None:
            raise ValueError(f"out_dir {self.out_dir!r} is relative and neither out_root nor data.root is set")
        return Path(base).expanduser() / p


SECTIONS = ("data", "model", "loss", "train", "rl", "predict", "synth")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert a YAML value against a field type hint (int -> float where a float is expected)."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if is_union else (hint,)
    if value is None:
        if type(None) in args:
            return None
        raise ValueError(f"{where}: None is not allowed")
    target = [a for a in args if a is not type(None)][0]
    origin = typing.get_origin(target)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return list(value)
    if target in (int, float) and isinstance(value, str):  # YAML reads 1e-4 as a string
        try:
            value = target(value)
        except ValueError:
            raise ValueError(f"{where}: expected {target.__name__}, got {value!r}") from None
    if target is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if target is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if target is bool and isinstance(value, bool):
        return value
    if target is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"{where}: expected {getattr(target, '__name__', target)}, got {value!r}")


def _fill(obj: Any, values: dict[str, Any], where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    if isinstance(obj, DetrConfig):
        names -= set(SECTIONS)
    for key, value in values.items():
        if key not in names:
            known = ", ".join(sorted(names))
            raise ValueError(f"unknown config key {where}{key}; known: {known}")
        setattr(obj, key, _coerce(value, hints[key], f"{where}{key}"))


def config_from_dict(d: dict[str, Any]) -> DetrConfig:
    """Build a validated :class:`DetrConfig` from a nested dict (as a recipe YAML parses)."""
    cfg = DetrConfig()
    d = dict(d or {})
    for section in SECTIONS:
        sub = d.pop(section, None) or {}
        if not isinstance(sub, dict):
            raise ValueError(f"config section {section!r} must be a mapping, got {sub!r}")
        _fill(getattr(cfg, section), sub, f"{section}.")
    _fill(cfg, d, "")
    return revalidate(cfg)


def revalidate(cfg: DetrConfig) -> DetrConfig:
    """Run every section's ``__post_init__`` again (after setattr-based updates)."""
    for section in SECTIONS:
        sub = getattr(cfg, section)
        post = getattr(sub, "__post_init__", None)
        if post is not None:
            post()
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> DetrConfig:
    """Read a recipe YAML and apply ``--key value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"recipe {path} must be a YAML mapping")
    try:
        cfg = config_from_dict(d)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return apply_overrides(cfg, overrides or [])


def _locate(cfg: DetrConfig, key: str) -> tuple[Any, str]:
    """The dataclass holding ``key`` (``section.name`` or a bare name unique across sections)."""
    if "." in key:
        section, name = key.split(".", 1)
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r} in --{key}; known: {', '.join(SECTIONS)}")
        return getattr(cfg, section), name
    top = {f.name for f in dataclasses.fields(cfg)} - set(SECTIONS)
    if key in top:
        return cfg, key
    owners = [s for s in SECTIONS if key in {f.name for f in dataclasses.fields(getattr(cfg, s))}]
    if len(owners) == 1:
        return getattr(cfg, owners[0]), key
    if not owners:
        raise ValueError(f"unknown config key --{key}")
    raise ValueError(f"--{key} is ambiguous; write one of: " + ", ".join(f"--{s}.{key}" for s in owners))


def apply_overrides(cfg: DetrConfig, overrides: list[str]) -> DetrConfig:
    """Apply ``["--section.key", "value", ...]`` (values parsed as YAML: ``null``, ``[a, b]``, ``1e-4``)."""
    items = list(overrides)
    if len(items) % 2:
        raise ValueError(f"overrides must come in --key value pairs, got {items}")
    for flag, raw in zip(items[::2], items[1::2]):
        if not flag.startswith("--"):
            raise ValueError(f"expected --key before {raw!r}, got {flag!r}")
        key = flag[2:].replace("-", "_")
        obj, name = _locate(cfg, key)
        value = yaml.safe_load(raw)
        _fill(obj, {name: value}, f"{key.rsplit('.', 1)[0]}." if "." in key else "")
    return revalidate(cfg)


def config_to_dict(cfg: DetrConfig) -> dict[str, Any]:
    """A plain dict (for checkpoints and logs)."""
    return dataclasses.asdict(cfg)
