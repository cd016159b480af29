"""GIRL-DETR configuration: the dataclass tree of a recipe (``recipes/detr/*.yaml``), read by
:mod:`timegrpo.config.core` like every other command's config (YAML file + ``--section.key value`` overrides).

A recipe has one mapping per section (``data``, ``model``, ``loss``, ``train``, ``rl``, ``predict``, ``synth``,
``demo``) and a few top-level keys (``name``, ``seed``, ``out_dir``, ``device``, ``threads``). Relative paths in ``data``
are resolved against ``data.root`` and ``out_dir`` against ``out_root`` (never against the working directory).
:func:`load_detr_config` is :func:`timegrpo.config.core.load` with the bare-key preference the ``detr`` commands
use: a key in both ``data`` and ``synth`` (``--clip_len``) means ``data``'s.

>>> from timegrpo.config import core
>>> cfg = core.from_dict(DetrConfig, {"data": {"clip_len": 2.0}, "rl": {"p1": 20, "p2": 20, "rho": 0.05}})
>>> cfg.data.clip_len, cfg.model.hidden_dim, cfg.rl.rho
(2.0, 256, 0.05)
>>> cfg = load_detr_config(None, ["--clip_len", "1", "--train.lr", "2e-4", "--temperature", "0.3"])
>>> cfg.data.clip_len, cfg.train.lr, cfg.rl.temperature
(1.0, 0.0002, 0.3)
>>> load_detr_config(None, ["--lr", "1e-3"])
Traceback (most recent call last):
...
timegrpo.config.core.ConfigError: option --lr is ambiguous: say which with --train.lr or --rl.lr
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from timegrpo.config import core
from timegrpo.config.core import ConfigError, check, check_choice, opt, section

#: Where a bare key that several sections have goes (``--clip_len`` is ``data.clip_len``, not ``synth.clip_len``).
PREFER_SECTION = "data"


@dataclass
class DetrDataConfig:
    root: str | None = opt(None, "directory that relative paths below are resolved against (e.g. a lighthouse checkout)")
    train: str | None = opt(None, "training annotations (moment_detr jsonl)")
    val: str | None = opt(None, "validation annotations, evaluated during training")
    test: str | None = opt(None, "held-out annotations used by `predict` and the final report")
    annotation_format: str | None = opt("moment_detr", "format name for timegrpo.data.formats (None: auto-detect)")
    video_feat_dirs: list[str] = opt([], "one directory per video feature type, each holding {vid}.npz['features']")
    text_feat_dir: str | None = opt(None, "directory of per-query text features")
    text_file: str = opt("qid{qid}.npz", "text feature file name pattern ({qid} is substituted; TACoS uses '{qid}.npz')")
    video_key: str = opt("features", "array name inside each video .npz")
    text_key: str = opt("last_hidden_state", "array name inside each text .npz")
    clip_len: float = opt(2.0, "seconds per feature clip (2 for QVHighlights, 1 for Charades-STA/TACoS per the spec)")
    max_v_len: int | None = opt(75, "truncate videos to this many clips (None: never)")
    max_q_len: int = opt(32, "truncate queries to this many tokens")
    temporal_encoding: bool = opt(True, "append [i/L, (i+1)/L] to every clip feature (the 'tef')")
    length_tolerance: float = opt(2.0, "clips of disagreement allowed between feature length and duration/clip_len")
    on_bad: str = opt("error", "bad annotation or feature (missing file, length mismatch): error | skip | clip "
                     "(clip repairs windows past the duration and drops what it cannot repair, as skip)")
    cache_videos: int | None = opt(None, "how many videos' prepared features to keep in memory (None: every video "
                                   "of the split, i.e. sized to the dataset; 0: none, read each time)")
    num_workers: int = opt(0, "DataLoader worker processes (0: load in the main process). With workers and a cache, "
                           "the split's features are read once in the main process before the workers start, so "
                           "they share them")

    def __post_init__(self) -> None:
        if self.on_bad not in ("error", "skip", "clip"):
            raise ConfigError(f"data.on_bad must be 'error', 'skip' or 'clip', got {self.on_bad!r}")
        if self.clip_len <= 0:
            raise ConfigError(f"data.clip_len must be > 0, got {self.clip_len}")
        if self.num_workers < 0 or (self.cache_videos is not None and self.cache_videos < 0):
            raise ConfigError("data.num_workers and data.cache_videos must be >= 0")
        if "{qid}" not in self.text_file:
            raise ConfigError(f"data.text_file must contain '{{qid}}', got {self.text_file!r}")


@dataclass
class DetrModelConfig:
    hidden_dim: int = opt(256, "model width d")
    nheads: int = opt(8, "attention heads")
    dim_feedforward: int = opt(1024, "FFN width")
    enc_layers: int = opt(3, "encoder layers over [global token, video]")
    dec_layers: int = opt(3, "DAB-style decoder layers")
    num_queries: int = opt(10, "moment queries (anchors)")
    dropout: float = opt(0.1, "dropout inside the transformer")
    input_dropout: float = opt(0.5, "dropout before the first input projection layer")
    n_input_proj: int = opt(2, "layers in each input projection")
    cross_modal_interaction: bool = opt(True, "Cross-Modal Interaction block before the encoder")
    text_guided_gating: bool = opt(True, "Text-Guided Gating on the first decoder layer")
    tgg_target: str = opt("queries", "what the gate acts on: queries (the paper: the gated sentence prior is added "
                          "to the queries before they attend) | cross_attention (the earlier reading: the gate "
                          "scales the video cross-attention output)")
    position_concat: bool = opt(True, "DAB-DETR's conditional cross-attention: per head the query is [content ; "
                                "positional] and the key [content ; position] (False: add them, one dot product)")
    width_modulation: bool = opt(True, "DAB-DETR's width-modulated attention: the positional query is scaled by "
                                 "w_ref / w (w_ref predicted from the content); needs position_concat")
    query_scale: bool = opt(True, "DAB-DETR's query scale: from the second layer on, the positional query is "
                            "multiplied element-wise by an MLP of the content; needs position_concat")
    saliency_head: bool = opt(True, "predict a per-clip saliency score")

    def __post_init__(self) -> None:
        if self.hidden_dim % self.nheads:
            raise ConfigError(f"model.hidden_dim {self.hidden_dim} must be divisible by model.nheads {self.nheads}")
        if self.hidden_dim % 2:
            raise ConfigError("model.hidden_dim must be even (sine embeddings of center and width)")
        if self.tgg_target not in ("queries", "cross_attention"):
            raise ConfigError(f"model.tgg_target must be queries or cross_attention, got {self.tgg_target!r}")
        if (self.width_modulation or self.query_scale) and not self.position_concat:
            raise ConfigError("model.width_modulation and model.query_scale act on DAB-DETR's concatenated "
                              "positional query: with position_concat false set both false too")


@dataclass
class DetrLossConfig:
    cost_span: float = opt(10.0, "matching cost weight of span L1")
    cost_giou: float = opt(1.0, "matching cost weight of -GIoU")
    cost_class: float = opt(4.0, "matching cost weight of -p(foreground)")
    span_coef: float = opt(10.0, "loss weight of span L1 (center/width)")
    giou_coef: float = opt(1.0, "loss weight of 1 - GIoU")
    label_coef: float = opt(4.0, "loss weight of the foreground/background cross-entropy")
    eos_coef: float = opt(0.1, "cross-entropy weight of the no-object class")
    label_reduction: str = opt("mean", "how the weighted class cross-entropy is averaged: mean (Moment-DETR: "
                               "reduction='none', then the mean over all queries) | weighted_mean (PyTorch's "
                               "default with class weights: divided by the sum of the weights, ~5x stronger)")
    iou_coef: float = opt(1.0, "loss weight of the IoU head (L1 to the detached IoU of each query with its best GT)")
    saliency_coef: float = opt(0.0, "loss weight of the saliency ranking loss (QVHighlights: 1)")
    saliency_margin: float = opt(0.2, "hinge margin of the saliency ranking loss")
    aux_loss: bool = opt(True, "apply the losses to every decoder layer")


@dataclass
class DetrTrainConfig:
    epochs: int = opt(200, "supervised epochs")
    batch_size: int = opt(32, "queries per step")
    lr: float = opt(1e-4, "AdamW learning rate")
    weight_decay: float = opt(1e-4, "AdamW weight decay")
    lr_drop: int | None = opt(None, "multiply lr by 0.1 at this epoch (None: never)")
    grad_clip: float = opt(0.1, "max gradient norm (0: no clipping)")
    ema_decay: float = opt(0.999, "EMA decay per step; the EMA weights are evaluated and handed to RL")
    eval_every: int = opt(1, "evaluate on data.val every this many epochs (0: only at the end)")
    patience: int | None = opt(None, "stop when val mIoU has not risen by more than min_delta for this many epochs "
                               "(None: run the fixed budget train.epochs)")
    min_delta: float = opt(0.0, "rise of val mIoU (points) over the best so far that makes a new best (best.ckpt) "
                           "and resets patience")
    resume: bool = opt(True, "continue from out_dir/supervised/last.ckpt when it exists")

    def __post_init__(self) -> None:
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"train.patience must be >= 1 or null, got {self.patience}")


@dataclass
class DetrRLConfig:
    epochs: int = opt(40, "RL epochs (the schedule is indexed by epoch)")
    batch_size: int = opt(32, "queries per step")
    lr: float = opt(1e-4, "AdamW learning rate of the heads")
    weight_decay: float = opt(1e-4, "AdamW weight decay")
    grad_clip: float = opt(0.1, "max gradient norm (0: no clipping)")
    p1: int = opt(8, "epoch at which the reward-weighted top-3 span loss starts (phase 2)")
    p2: int = opt(12, "epoch at which REINFORCE starts (phase 3); c_S reaches rho here")
    rho: float = opt(0.03, "final weight of the span and REINFORCE losses")
    span_ramp: str = opt("to_p2", "c_S's linear ramp from p1: to_p2 (reaches rho at epoch p2: (e - p1 + 1) / "
                         "(p2 - p1 + 1)) | before_p2 (the earlier reading, rho one epoch early: (e - p1 + 1) / (p2 - p1))")
    reinforce_ramp: int = opt(10, "epochs over which c_R ramps from 0 to rho")
    cosine_decay: bool = opt(False, "after both ramps, cosine-decay c_S and c_R to rho * decay_floor")
    decay_floor: float = opt(0.2, "fraction of rho that the cosine decay ends at")
    top1_coef: float = opt(1.0, "weight of the top-1 refinement loss (all phases)")
    top_k: int = opt(3, "queries in the reward-weighted span loss")
    temperature: float = opt(0.5, "policy temperature: softmax(score / temperature) over the queries")
    policy_score: str = opt("prob", "the policy's score: prob (p_fg, as the spec writes it) | logit (fg minus "
                           "no-object logit, which does not saturate once the class head is confident)")
    reward: str = opt("iou", "REINFORCE reward of a drawn query: iou (the spec: IoU with its best ground truth) | "
                      "hit (ours: 1 when that IoU >= reward_threshold, the R1 metric itself)")
    reward_threshold: float = opt(0.7, "the IoU a `hit` reward counts from")
    n_samples: int = opt(3, "REINFORCE samples per query")
    baseline: str = opt("greedy", "REINFORCE baseline: greedy (reward of the argmax query) | group (z-score of all)")
    objective: str = opt("girl", "girl (the three-stage RL loss) | supervised (set losses on the heads: the control)")
    iou_coef: float = opt(1.0, "keep training the IoU head on the changing spans (0: leave it)")
    heads: list[str] = opt(["span_head", "class_head", "iou_head"], "the only modules RL may change")
    init: str | None = opt(None, "supervised checkpoint to start from (None: out_dir/supervised/best.ckpt)")
    on_unconverged: str = opt("error", "when the supervised run was still improving (its best epoch in the last "
                              "converged_tail of its epochs): error (refuse, saying how to continue) | warn | ignore")
    converged_tail: float = opt(0.1, "fraction of the supervised epochs at the end where a best epoch means "
                                "'still improving'")
    control: bool = opt(True, "`detr rl` also runs the control (objective supervised, same heads, same epochs) "
                        "and reports RL minus control on the test split")
    eval_every: int = opt(1, "evaluate on data.val every this many epochs (0: only at the end)")

    def __post_init__(self) -> None:
        if self.p2 < self.p1:
            raise ConfigError(f"rl.p2 ({self.p2}) must be >= rl.p1 ({self.p1})")
        if self.temperature <= 0:
            raise ConfigError("rl.temperature must be > 0")
        if self.on_unconverged not in ("error", "warn", "ignore"):
            raise ConfigError(f"rl.on_unconverged must be error, warn or ignore, got {self.on_unconverged!r}")
        if not 0 <= self.converged_tail < 1:
            raise ConfigError(f"rl.converged_tail must be in [0, 1), got {self.converged_tail}")
        if self.span_ramp not in ("to_p2", "before_p2"):
            raise ConfigError(f"rl.span_ramp must be to_p2 or before_p2, got {self.span_ramp!r}")
        if self.policy_score not in ("prob", "logit"):
            raise ConfigError(f"rl.policy_score must be prob or logit, got {self.policy_score!r}")


@dataclass
class DetrPredictConfig:
    split: str = opt("test", "which annotation file to predict: train | val | test")
    checkpoint: str | None = opt(None, "checkpoint to load (None: out_dir/rl/final.ckpt, else supervised/best.ckpt)")
    max_windows: int = opt(10, "windows written per query, ranked by score")
    score: str = opt("fg", "ranking score: fg (p foreground, Moment-DETR) | fg_x_iou (times the IoU head)")
    output: str | None = opt(None, "jsonl to write (None: out_dir/predictions_{split}.jsonl)")


#: Query sentences of the synthetic benchmark's concepts (the features carry the meaning, not these words).
CONCEPTS = (
    "a dog runs across the yard", "a woman opens the fridge", "a man rides a bike", "someone pours coffee",
    "a child throws a ball", "the chef chops onions", "a car drives past", "people dance on stage",
    "a cat jumps on the sofa", "a man plays the guitar", "a girl reads a book", "waves hit the shore",
    "a person washes dishes", "fireworks light the sky", "a boy climbs a tree", "a woman ties her shoes",
)


@dataclass
class FeatureSynthConfig:
    n_videos: int = opt(600, "videos in all splits together")
    seed: int = opt(0, "random seed (directions, videos, queries)")
    splits: list[float] = opt([0.6, 0.2, 0.2], "fractions of videos in train / val / test")
    clip_len: float = opt(2.0, "seconds per clip")
    min_clips: int = opt(16, "shortest video, in clips")
    max_clips: int = opt(32, "longest video, in clips")
    events_per_video: list[int] = opt([2, 3], "min and max events (= queries) per video")
    repeat_prob: float = opt(0.4, "probability that a video's first concept occurs twice: a query with two "
                            "ground-truth windows (about a third of QVHighlights queries have several)")
    min_event: float = opt(4.0, "shortest event, seconds")
    max_event: float = opt(20.0, "longest event, seconds")
    n_concepts: int = opt(8, "distinct event concepts (at most 16 have names)")
    video_dims: list[int] = opt([48, 16], "one width per video feature type (types are named f0, f1, ...)")
    text_dim: int = opt(32, "text token feature width")
    amplitude: float = opt(1.0, "strength of an event's direction in a fully covered clip")
    noise: float = opt(0.15, "per-clip isotropic noise (per dimension, times sqrt(48/dim))")
    scene: float = opt(0.5, "norm of the per-video constant scene vector")
    text_noise: float = opt(0.2, "noise on the concept token (per dimension, times sqrt(32/dim))")
    label_jitter: float = opt(0.0, "annotation noise: move every window boundary of the noisy splits by "
                              "U(-label_jitter, +label_jitter) seconds (the features keep the true events)")
    label_noise_splits: list[str] = opt(["train", "val"], "splits whose annotations get label_jitter (test stays clean)")
    min_tokens: int = opt(3, "fewest tokens per query")
    max_tokens: int = opt(6, "most tokens per query")

    def __post_init__(self) -> None:
        if self.n_concepts > len(CONCEPTS):
            raise ConfigError(f"n_concepts must be <= {len(CONCEPTS)}")
        lo, hi = self.events_per_video
        if not 1 <= lo <= hi <= self.n_concepts:
            raise ConfigError("events_per_video must be [min, max] with 1 <= min <= max <= n_concepts")
        if self.min_event * (hi + 1) > 0.8 * (self.min_clips - 1) * self.clip_len:
            raise ConfigError("events do not fit: min_event * max events must be <= 0.8 x the shortest duration")
        if self.label_jitter < 0 or not set(self.label_noise_splits) <= {"train", "val", "test"}:
            raise ConfigError("label_jitter must be >= 0 and label_noise_splits a subset of [train, val, test]")
        if len(self.splits) != 3 or abs(sum(self.splits) - 1) > 1e-6:
            raise ConfigError("splits must be three fractions summing to 1")


@dataclass
class DetrDemoConfig:
    seeds: list[int] = opt([0, 1, 2], "`detr demo` runs once per seed; each seed sets `seed` (initialisation, batch "
                           "order, RL sampling) and `synth.seed` (the synthetic data)")
    processes: int = opt(1, "seeds run side by side in this many processes (each with `threads` torch threads)")

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"demo.seeds must be distinct and not empty, got {self.seeds}")
        if self.processes < 1:
            raise ConfigError(f"demo.processes must be >= 1, got {self.processes}")


@dataclass
class DetrConfig:
    name: str = opt("girl_detr", "run name")
    seed: int = opt(2023, "seed of parameter init, shuffling, dropout and RL sampling")
    out_dir: str = opt("runs/girl_detr", "where checkpoints, logs and predictions go")
    out_root: str | None = opt(None, "directory a relative out_dir is resolved against (None: the data root)")
    device: str = opt("auto", "cpu | cuda | auto")
    threads: int = opt(0, "torch CPU threads (0: torch's default)")
    data: DetrDataConfig = section(DetrDataConfig, "feature data")
    model: DetrModelConfig = section(DetrModelConfig, "architecture")
    loss: DetrLossConfig = section(DetrLossConfig, "matching and losses")
    train: DetrTrainConfig = section(DetrTrainConfig, "supervised stage")
    rl: DetrRLConfig = section(DetrRLConfig, "gradient-isolated RL stage")
    predict: DetrPredictConfig = section(DetrPredictConfig, "prediction")
    synth: FeatureSynthConfig = section(FeatureSynthConfig, "synthetic clip-feature benchmark (demo, synth-features)")
    demo: DetrDemoConfig = section(DetrDemoConfig, "`detr demo`: seeds")

    def resolve(self, path: str | None, *, what: str = "path") -> Path | None:
        """Resolve a data path against ``data.root``; a relative path with no root is an error."""
        if path is None:
            return None
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        if self.data.root is None:
            raise ConfigError(f"{what} {path!r} is relative but data.root is not set; pass --data.root DIR")
        return Path(self.data.root).expanduser() / p

    def run_dir(self) -> Path:
        """``out_dir`` resolved against ``out_root`` (or ``data.root``)."""
        p = Path(self.out_dir).expanduser()
        if p.is_absolute():
            return p
        base = self.out_root or self.data.root
        if base is None:
            raise ConfigError(f"out_dir {self.out_dir!r} is relative and neither out_root nor data.root is set")
        return Path(base).expanduser() / p


@dataclass
class FeatureExtractConfig:
    """``timegrpo detr features`` (:mod:`timegrpo.detr.extract`): CLIP features of videos and queries for GIRL-DETR,
    in the lighthouse layout the ``data`` section reads."""

    videos: str | None = opt(None, "Folder of the videos (required).")
    annotations: str | None = opt(None, "Annotation file in any supported format (required).")
    out: str | None = opt(None, "Output folder: clip/{vid}.npz, clip_text/qid{qid}.npz, features.json (required).")
    format: str | None = opt(None, "Annotation format name (default: detected from the file).")
    durations: str | None = opt(None, "Durations file for formats without them (Charades-STA csv).")
    model: str = opt("openai/clip-vit-base-patch32", "CLIP checkpoint (folder or Hub id) loaded with CLIPModel.")
    clip_len: float = opt(2.0, "Seconds per clip (2 for QVHighlights in Moment-DETR / lighthouse).")
    frames_per_clip: int = opt(1, "Frames per clip; their CLIP features are averaged.")
    batch_size: int = opt(32, "Frames per CLIP image forward (a chunk of clips is decoded at once), queries per "
                          "text forward.")
    device: str = opt("auto", "cpu | cuda | auto.")
    on_bad: str = opt("error", "Annotation anomalies and unreadable videos: stop (error), or leave out and count "
                      "(skip; clip also clamps windows).")
    overwrite: bool = opt(False, "Recompute every file, even those already written.")

    def __post_init__(self) -> None:
        check(self.clip_len > 0, "clip_len", f"must be > 0, got {self.clip_len}")
        check(self.frames_per_clip >= 1, "frames_per_clip", f"must be >= 1, got {self.frames_per_clip}")
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        check_choice("on_bad", self.on_bad, ("error", "skip", "clip"))


def load_detr_config(path: str | Path | None, overrides: Sequence[str] = ()) -> DetrConfig:
    """A recipe (``None``: the defaults) with ``['--section.key', 'value', ...]`` overrides, validated."""
    return core.load(DetrConfig, path, overrides, prefer_section=PREFER_SECTION, what="recipe")
