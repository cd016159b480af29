"""Publishing a checkpoint: the upload folder, its model card, the load-back check, and the Hub upload.

:func:`push_checkpoint` is what ``timegrpo push`` and the trainer (``push_to_hub: true``) call. It

1. reads the run's resolved recipe (``config.yaml`` next to the checkpoint, i.e. in the run's ``output_dir``,
   or the file given as ``config``) and the evaluation folders (each a ``timegrpo eval`` output with
   ``metrics.json`` and optionally ``eval_config.json``);
2. assembles an upload folder: the checkpoint's top-level files (weights, ``config.json``,
   ``generation_config.json``, processor/tokenizer files, ``chat_template.jinja``), never a sub-folder
   (``state/`` holds Accelerate's optimizer/RNG state, DeepSpeed writes ``global_stepN/``) nor a training-state
   file (:data:`TRAINING_STATE_PATTERNS`); plus ``recipe.yaml`` (the recipe, verbatim), ``training_metrics.jsonl``
   (the run's ``metrics.jsonl``), ``eval/NAME/metrics.json`` and a model card ``README.md`` whose YAML front
   matter has ``license``, ``base_model``, ``library_name``, ``pipeline_tag``, ``tags``, ``datasets`` and a
   ``model-index`` with R1@0.3/0.5/0.7 and mIoU per evaluated dataset;
3. checks the folder: it holds no training state, the card's front matter parses back (``huggingface_hub``
   ``ModelCard`` and ``metadata_load``) with every evaluation result, and the model and processor load back
   with ``AutoModelForImageTextToText`` / ``AutoProcessor.from_pretrained`` (``check="full"``: real weights;
   ``"meta"``: on the meta device, which checks every weight name and shape without the memory);
4. unless ``dry_run``: ``HfApi.create_repo(exist_ok=True)`` then ``upload_folder``. Missing token, offline
   mode and network failures raise :class:`PushError` saying what to do; the folder is kept for a retry.

Weights are hard-linked into the upload folder when it is on the same file system (copied otherwise), so a
7B checkpoint costs no extra disk: treat the folder as read-only (rewriting a linked file in place would rewrite
the checkpoint's).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Checkpoint files that are training state, never uploaded (sub-folders such as ``state/`` never are either).
TRAINING_STATE_PATTERNS: tuple[str, ...] = (
    "optimizer*", "scheduler*", "scaler*", "rng_state*", "random_states*", "custom_checkpoint*",
    "trainer_state.json", "training_args.bin", "latest", "zero_to_fp32.py", "*.pkl", "pytorch_model_fsdp*",
)
#: Metrics of the ``model-index`` (percentages, as :func:`timegrpo.metrics.grounding_metrics` gives them).
CARD_METRICS: tuple[str, ...] = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")
#: Extra columns of the card's evaluation table when ``metrics.json`` has them.
TABLE_EXTRAS: tuple[str, ...] = ("format_rate", "n")
TASK_TYPE = "temporal-video-grounding"
TASK_NAME = "Temporal Video Grounding"
#: Display names of the benchmarks (keys: annotation format / benchmark names used across timegrpo).
DATASET_NAMES: dict[str, str] = {
    "charades_sta": "Charades-STA", "activitynet": "ActivityNet Captions", "tacos": "TACoS",
    "tacos_2dtan": "TACoS", "qvhighlights": "QVHighlights", "moment_detr": "QVHighlights",
    "rextime": "ReXTime", "nextgqa": "NExT-GQA", "time_r1": "TimeRFT (Time-R1)", "tvgbench": "TVGBench",
    "synthetic": "timegrpo synthetic",
}
#: Licences of the Hub base models the shipped recipes start from (anything else: ``other`` unless given).
KNOWN_LICENSES: dict[str, str] = {
    "Qwen/Qwen2-VL-2B-Instruct": "apache-2.0",
    "Qwen/Qwen2-VL-7B-Instruct": "apache-2.0",
    "Qwen/Qwen2.5-VL-7B-Instruct": "apache-2.0",
    "Qwen/Qwen3-VL-8B-Instruct": "apache-2.0",
}
RECIPE_NAME = "recipe.yaml"
CHECKS = ("full", "meta", "none")


class PushError(RuntimeError):
    """Publishing failed; the message says what was wrong and what to do."""


@dataclass
class EvalRun:
    """One evaluation folder: ``name`` (benchmark key), display ``title``, ``split``, the annotation file's name
    and its numeric ``metrics``."""

    name: str
    title: str
    metrics: dict[str, float]
    path: Path
    split: str | None = None
    annotations: str | None = None


@dataclass
class PushResult:
    """What :func:`push_checkpoint` did: the upload ``folder``, its files, what was left out, the checks."""

    folder: Path
    repo_id: str
    files: list[str]
    skipped: list[str]
    checks: dict[str, str] = field(default_factory=dict)
    url: str | None = None  # the commit URL; None for a dry run


# --------------------------------------------------------------------------------------------- inputs
def find_recipe(checkpoint: str | Path) -> Path | None:
    """The run's ``config.yaml``: in the checkpoint folder, else in its parent (the run's ``output_dir``)."""
    ckpt = Path(checkpoint)
    for candidate in (ckpt / "config.yaml", ckpt.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def launch_command(recipe_text: str) -> str | None:
    """The launch command a recipe states on its first line (``# accelerate launch ...``), or None.

    >>> launch_command("# timegrpo train --config recipes/x.yaml\\nmethod: grpo\\n")
    'timegrpo train --config recipes/x.yaml'
    >>> launch_command("# # timegrpo sft --config r.yaml\\n")
    'timegrpo sft --config r.yaml'
    >>> launch_command("method: grpo\\n") is None
    True
    """
    first = recipe_text.lstrip("\ufeff").split("\n", 1)[0].strip()
    if not first.startswith("#"):
        return None
    line = re.sub(r"^[#\s]+", "", first)  # also '# # timegrpo ...' (a header that already had its '#')
    return line if "timegrpo" in line else None


def reproduce_command(command: str | None, recipe_name: str = RECIPE_NAME) -> str:
    """``command`` pointed at the uploaded recipe (``--config X`` -> ``--config recipe.yaml``).

    >>> reproduce_command("accelerate launch -m timegrpo.train --config recipes/a.yaml --beta 0")
    'accelerate launch -m timegrpo.train --config recipe.yaml --beta 0'
    >>> reproduce_command(None)
    'timegrpo train --config recipe.yaml'
    """
    if not command or not re.search(r"--config[ =]\S+", command):
        return f"timegrpo train --config {recipe_name}"
    return re.sub(r"--config([ =])\S+", lambda m: f"--config{m.group(1)}{recipe_name}", command, count=1)


def _split_eval_spec(spec: str | Path) -> tuple[str | None, Path]:
    text = str(spec)
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        return name.strip() or None, Path(path)
    return None, Path(text)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PushError(f"{path}: {what} is not valid JSON ({err}); rerun `timegrpo eval` to rewrite it") from None


def _annotations(config: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(path, format)`` of the annotations in an ``eval_config.json`` (``timegrpo eval`` nests them)."""
    ann = config.get("annotations")
    if isinstance(ann, dict):
        path, fmt = ann.get("path"), ann.get("format")
    else:
        path, fmt = ann, config.get("format")
    return (path if isinstance(path, str) and path else None), (fmt if isinstance(fmt, str) and fmt else None)


def _eval_name(metrics: dict[str, Any], config: dict[str, Any], folder: Path) -> str:
    """The benchmark key: ``eval_config.json``'s dataset/name, ``metrics.json``'s ``benchmark`` unless generic,
    the annotation format, the annotation file's stem, else the folder's name."""
    candidates = [config.get("dataset"), config.get("name"), metrics.get("benchmark"), _annotations(config)[1]]
    for value in candidates:
        if isinstance(value, str) and value and value not in ("auto", "grounding"):
            return value
    path = _annotations(config)[0]
    return Path(path).stem if path else folder.name


def read_eval(spec: str | Path) -> EvalRun:
    """Read an evaluation folder, given as ``DIR`` or ``NAME=DIR`` (``NAME`` overrides the benchmark name).

    ``DIR/metrics.json`` is a JSON object of metric -> number (a nested ``{"metrics": {...}}`` is accepted);
    it must have at least one of :data:`CARD_METRICS`. The benchmark is named from ``eval_config.json``
    (optional; ``annotations.format``/``annotations.path`` as ``timegrpo eval`` writes it, ``dataset``,
    ``split``) and ``metrics.json``'s ``benchmark``.
    """
    name, folder = _split_eval_spec(spec)
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise PushError(f"evaluation folder {folder} has no metrics.json: pass a folder written by "
                        "`timegrpo eval --out DIR`")
    top = raw = _read_json(metrics_path, "metrics.json")
    if isinstance(raw, dict) and isinstance(raw.get("metrics"), dict):
        raw = raw["metrics"]
    if not isinstance(raw, dict) or not isinstance(top, dict):
        raise PushError(f"{metrics_path}: expected a JSON object of metric -> number, got {type(raw).__name__}")
    metrics = {k: float(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not any(k in metrics for k in CARD_METRICS):
        raise PushError(f"{metrics_path}: none of {', '.join(CARD_METRICS)} found (keys: {', '.join(raw) or 'none'}); "
                        "is this a grounding evaluation?")
    config_path = folder / "eval_config.json"
    config = _read_json(config_path, "eval_config.json") if config_path.is_file() else {}
    config = config if isinstance(config, dict) else {}
    key = name or _eval_name(top, config, folder)
    split = config.get("split") if isinstance(config.get("split"), str) else None
    ann = _annotations(config)[0]
    return EvalRun(name=key, title=DATASET_NAMES.get(key, key), metrics=metrics, path=folder, split=split,
                   annotations=Path(ann).name if ann else None)


def read_evals(specs: Iterable[str | Path]) -> list[EvalRun]:
    """:func:`read_eval` for each spec; two folders of the same benchmark name are an error."""
    runs = [read_eval(s) for s in specs]
    seen: dict[str, Path] = {}
    for run in runs:
        if run.name in seen:
            raise PushError(f"two evaluations are both named {run.name!r} ({seen[run.name]} and {run.path}): "
                            "name them with --eval NAME=DIR")
        seen[run.name] = run.path
    return runs


def _front_matter(readme: Path) -> dict[str, Any]:
    from huggingface_hub import metadata_load

    try:
        return metadata_load(readme) or {}
    except Exception:  # a hand-written README with broken YAML: no metadata to inherit
        return {}


def resolve_base_model(name_or_path: str, depth: int = 3) -> str | None:
    """The Hub id a run started from. A Hub id is returned as is; a local folder (e.g. an SFT warm start) is
    followed through its ``README.md`` front matter (``base_model``) or its timegrpo ``config.yaml``
    (``model.model_name_or_path``), up to ``depth`` hops; None when no Hub id is found.

    >>> resolve_base_model("Qwen/Qwen2.5-VL-7B-Instruct")
    'Qwen/Qwen2.5-VL-7B-Instruct'
    """
    path = Path(name_or_path)
    if not path.exists():
        return name_or_path if re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) else None
    if depth <= 0 or not path.is_dir():
        return None
    readme = path / "README.md"
    if readme.is_file():
        base = _front_matter(readme).get("base_model")
        if isinstance(base, list):
            base = base[0] if base else None
        if isinstance(base, str) and base:
            return base
    recipe = find_recipe(path)
    if recipe is not None:
        from timegrpo.config import ConfigError, load_recipe

        try:
            parent = load_recipe(recipe, []).model.model_name_or_path
        except ConfigError:
            return None
        if Path(parent).resolve() != path.resolve():
            return resolve_base_model(parent, depth - 1)
    return None


# ---------------------------------------------------------------------------------------------- folder
def is_training_state(name: str) -> bool:
    """Whether a checkpoint file is training state (optimizer, scheduler, RNG, ...), never uploaded.

    >>> [is_training_state(n) for n in ("optimizer.bin", "random_states_0.pkl", "model.safetensors")]
    [True, True, False]
    """
    return any(fnmatch.fnmatch(name, pattern) for pattern in TRAINING_STATE_PATTERNS)


def select_model_files(checkpoint: Path) -> tuple[list[Path], list[str]]:
    """``(files to upload, skipped entries with the reason)`` of a checkpoint folder (top level only)."""
    files: list[Path] = []
    skipped: list[str] = []
    for entry in sorted(checkpoint.iterdir()):
        if entry.is_dir():
            skipped.append(f"{entry.name}/ (folder: training state or not part of a from_pretrained model)")
        elif entry.name.startswith("."):
            skipped.append(f"{entry.name} (hidden file)")
        elif is_training_state(entry.name):
            skipped.append(f"{entry.name} (training state)")
        elif entry.name in ("README.md", "config.yaml", "metrics.jsonl"):
            skipped.append(f"{entry.name} (replaced by the files timegrpo writes)")
        else:
            files.append(entry)
    return files, skipped


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (no copy of big weights), copying when linking is not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _prepare_out(out: str | Path | None, checkpoint: Path) -> Path:
    if out is None:
        return Path(tempfile.mkdtemp(prefix="timegrpo-push-"))
    folder = Path(out)
    resolved, ckpt = folder.resolve(), checkpoint.resolve()
    if resolved == ckpt or ckpt in resolved.parents:
        raise PushError(f"--out {folder} is inside the checkpoint {checkpoint}: choose a folder outside it")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise PushError(f"--out {folder} exists and is not empty: remove it or choose a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _pipeline_tag(checkpoint: Path) -> str:
    """``video-text-to-text`` when the processor has a video processor, else ``image-text-to-text``."""
    if (checkpoint / "video_preprocessor_config.json").is_file():
        return "video-text-to-text"
    proc = checkpoint / "processor_config.json"
    if proc.is_file():
        data = _read_json(proc, "processor_config.json")
        if isinstance(data, dict) and "video_processor" in data:
            return "video-text-to-text"
    return "image-text-to-text"


def _model_type(checkpoint: Path) -> str:
    config = checkpoint / "config.json"
    if not config.is_file():
        raise PushError(f"{checkpoint} has no config.json: pass a checkpoint-N folder (or any folder written "
                        "by save_pretrained), not the run's output_dir or its state/ folder")
    data = _read_json(config, "config.json")
    return str(data.get("model_type", "")) if isinstance(data, dict) else ""


def checkpoint_step(checkpoint: Path) -> int | None:
    """The step of a ``checkpoint-STEP`` folder, else None.

    >>> checkpoint_step(Path("out/checkpoint-120")), checkpoint_step(Path("out/final"))
    (120, None)
    """
    m = re.fullmatch(r"checkpoint-(\d+)", checkpoint.name)
    return int(m.group(1)) if m else None


def _log_summary(metrics_jsonl: Path) -> tuple[int, dict[str, Any] | None]:
    """``(logged lines, the last line as a dict or None when it does not parse)`` of a ``metrics.jsonl``."""
    lines = [line for line in metrics_jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return 0, None
    try:
        last = json.loads(lines[-1])
    except json.JSONDecodeError:
        return len(lines), None
    return len(lines), last if isinstance(last, dict) else None


# ------------------------------------------------------------------------------------------------ card
@dataclass
class RunInfo:
    """The training run behind a checkpoint: its config, recipe text, launch command and log."""

    cfg: Any  # timegrpo.config.RecipeConfig
    recipe_text: str
    recipe_path: Path
    command: str | None
    step: int | None
    model_type: str
    logged_steps: int = 0
    last_log: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        """``sft`` when the launch command was ``timegrpo sft``, else ``train`` (the RL loop)."""
        words = (self.command or "").split()
        return "sft" if "sft" in words or "timegrpo.sft" in words else "train"

    @property
    def section(self) -> Any:
        """The config section that drove this run: ``cfg.sft`` or ``cfg.train``."""
        return self.cfg.sft if self.kind == "sft" else self.cfg.train


def read_run(checkpoint: Path, config: str | Path | None = None) -> RunInfo:
    """The :class:`RunInfo` of ``checkpoint`` from ``config`` (or the ``config.yaml`` :func:`find_recipe` finds)."""
    from timegrpo.config import ConfigError, load_recipe

    path = Path(config) if config is not None else find_recipe(checkpoint)
    if path is None:
        raise PushError(f"no config.yaml in {checkpoint} or {checkpoint.parent} (the run's output_dir): pass the "
                        "run's recipe with --config PATH")
    if not path.is_file():
        raise PushError(f"--config {path} does not exist")
    try:
        cfg = load_recipe(path, [])
    except ConfigError as err:
        raise PushError(f"{path} is not a timegrpo recipe: {err}") from None
    text = path.read_text(encoding="utf-8")
    log = path.parent / "metrics.jsonl"
    logged, last = _log_summary(log) if log.is_file() else (0, None)
    return RunInfo(cfg=cfg, recipe_text=text, recipe_path=path, command=launch_command(text),
                   step=checkpoint_step(checkpoint), model_type=_model_type(checkpoint),
                   logged_steps=logged, last_log=last)


def card_tags(run: RunInfo) -> list[str]:
    """``timegrpo``, the objective (``grpo`` / ``video-opd`` / ``sft``), ``temporal-video-grounding``, extras
    (the loss aggregation when not plain ``grpo``, ``lora``)."""
    cfg = run.cfg
    if run.kind == "sft":
        tags = ["timegrpo", "sft"]
    else:
        tags = ["timegrpo", {"grpo": "grpo", "opd": "video-opd"}.get(cfg.method, cfg.method), "reinforcement-learning"]
    tags += [TASK_TYPE, "video-llm", "qwen-vl"]
    if run.kind == "train" and cfg.method == "grpo" and cfg.train.loss_type != "grpo":
        tags.append(cfg.train.loss_type.replace("_", "-"))
    if cfg.model.use_lora:
        tags.append("lora")
    return list(dict.fromkeys(tags))


def card_metadata(run: RunInfo, evals: Sequence[EvalRun], *, repo_id: str, base_model: str | None,
                  license: str, pipeline_tag: str, datasets: Sequence[str] | None = None) -> Any:
    """The card's front matter as a ``huggingface_hub.ModelCardData`` (``model-index`` from ``evals``).

    ``license: other`` gets ``license_name``/``license_link`` pointing at the base model, as the Hub asks.
    """
    from huggingface_hub import EvalResult, ModelCardData

    results = [
        EvalResult(task_type=TASK_TYPE, task_name=TASK_NAME, dataset_type=ev.name, dataset_name=ev.title,
                   dataset_split=ev.split, metric_type=key, metric_name=key,
                   metric_value=round(ev.metrics[key], 2))
        for ev in evals for key in CARD_METRICS if key in ev.metrics
    ]
    if datasets is None:
        fmt = run.cfg.data.format
        train = run.cfg.data.train_file
        datasets = [fmt] if fmt else [Path(train).stem] if train else []
        datasets = list(dict.fromkeys([*datasets, *(ev.name for ev in evals)]))
    other: dict[str, str] = {}
    if license == "other":
        other["license_name"] = "same-as-base-model"
        if base_model:
            other["license_link"] = f"https://huggingface.co/{base_model}"
    return ModelCardData(
        license=license, **other, base_model=base_model, library_name="transformers", pipeline_tag=pipeline_tag,
        tags=card_tags(run), datasets=list(datasets) or None, model_name=repo_id if results else None,
        eval_results=results or None,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def _rewards_line(t: Any) -> str:
    weights = list(t.reward_weights) if t.reward_weights else [1.0] * len(t.reward_funcs)
    return ", ".join(f"`{name}` x {_fmt(float(w))}" for name, w in zip(t.reward_funcs, weights, strict=True))


def _rl_rows(run: RunInfo) -> list[tuple[str, str]]:
    cfg, t = run.cfg, run.cfg.train
    objective = {"grpo": "GRPO", "opd": "Video-OPD (on-policy distillation)"}.get(cfg.method, cfg.method)
    rows = [("method", f"{objective}; loss_type `{t.loss_type}`, advantages `{t.advantage_estimator}` "
                       f"(scale_rewards `{t.scale_rewards}`)"),
            ("rewards (weight)", _rewards_line(t)),
            ("KL beta", f"{_fmt(t.beta)}" + (f" (`{t.kl_estimator}` estimator)" if t.beta else " (no reference model)")),
            ("group size G", _fmt(t.num_generations)),
            ("clip epsilon", f"{_fmt(t.epsilon)}" + (f" / high {_fmt(t.epsilon_high)}" if t.epsilon_high else "")),
            ("num_iterations", _fmt(t.num_iterations)),
            ("temperature", _fmt(t.temperature)),
            ("max completion tokens", _fmt(t.max_completion_length))]
    if cfg.method == "opd":
        rows.append(("teacher", f"`{t.teacher_model_name_or_path}`"))
    return rows


def _trained_parts(m: Any) -> str:
    parts = [f"LoRA (r={m.lora_r}, alpha={m.lora_alpha}) on the language model" if m.use_lora else "language model"]
    if m.train_merger:
        parts.append("patch merger")
    if not m.freeze_vision_tower:
        parts.append("vision tower")
    return ", ".join(parts)


def _training_rows(run: RunInfo) -> list[tuple[str, str]]:
    cfg, s = run.cfg, run.section
    rows = _rl_rows(run) if run.kind == "train" else [("method", "supervised fine-tuning (timegrpo sft warm start)")]
    planned = f"max_steps {s.max_steps}" if s.max_steps > 0 else f"{_fmt(s.num_train_epochs)} epochs"
    steps = (f"{run.step} optimiser steps at this checkpoint ({planned} planned)" if run.step is not None
             else f"final model ({planned})")
    d = cfg.data
    frames = f"{d.nframes} frames" if d.nframes else f"{_fmt(d.fps)} fps, at most {d.max_frames} frames"
    rows += [
        ("learning rate", f"{_fmt(s.learning_rate)} ({s.lr_scheduler_type}, warmup {_fmt(s.warmup_ratio)})"),
        ("steps", steps),
        ("batch", f"{s.per_device_train_batch_size} prompt(s)/device x {s.gradient_accumulation_steps} accumulation"),
        ("trained parts", _trained_parts(cfg.model)),
        ("train data", f"`{d.train_file}` (format `{d.format or 'auto'}`)"),
        ("eval data", f"`{d.eval_file}`" if d.eval_file else "-"),
        ("video sampling", f"{frames}, total_pixels {_fmt(d.total_pixels)}, min_pixels {d.min_pixels}"),
        ("prompt template", f"`{d.prompt_template}`"),
        ("start model", f"`{cfg.model.model_name_or_path}`"),
    ]
    return rows


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _video_entry(d: Any) -> dict[str, Any]:
    """The qwen-vl-utils video entry of the recipe's sampling (``fps`` or ``nframes``, pixel budgets)."""
    entry: dict[str, Any] = {"type": "video", "video": "file:///path/to/video.mp4"}
    if d.nframes:
        entry["nframes"] = d.nframes
    else:
        entry["fps"] = d.fps
    for key in ("max_frames", "min_pixels", "max_pixels", "total_pixels"):
        if getattr(d, key) is not None:
            entry[key] = getattr(d, key)
    return entry


def usage_snippet(run: RunInfo, repo_id: str) -> str:
    """Python that loads the model from ``repo_id`` and grounds a query in a video with the training prompt."""
    from timegrpo.prompts import get_template

    tpl = get_template(run.cfg.data.prompt_template)
    messages = "messages = [\n"
    if tpl.system is not None:
        messages += f"    {{'role': 'system', 'content': [{{'type': 'text', 'text': {tpl.system!r}}}]}},\n"
    messages += ("    {'role': 'user', 'content': [\n"
                 "        {'type': 'text', 'text': PROMPT.replace('{query}', query)},\n"
                 f"        {_video_entry(run.cfg.data)!r},\n    ]}},\n]")
    patch = 16 if run.model_type == "qwen3_vl" else 14
    vision = ("images, videos, video_kwargs = process_vision_info(\n"
              f"    messages, image_patch_size={patch}, return_video_kwargs=True, return_video_metadata=True)\n"
              "videos, video_metadata = map(list, zip(*videos))\n"
              "inputs = processor(text=[text], videos=videos, video_metadata=video_metadata, return_tensors='pt',\n"
              "                   **video_kwargs).to(model.device)")
    normalize = "query = 'a person opens the door'  # lowercased, no final '.', as in training\n" if tpl.normalize \
        else "query = 'A person opens the door.'\n"
    return "\n".join([
        "from qwen_vl_utils import process_vision_info",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f"model = AutoModelForImageTextToText.from_pretrained({repo_id!r}, dtype='auto', device_map='auto')",
        f"processor = AutoProcessor.from_pretrained({repo_id!r})",
        "",
        f"PROMPT = {tpl.text!r}",
        normalize + messages,
        "text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
        vision,
        f"out = model.generate(**inputs, max_new_tokens={run.cfg.train.max_completion_length}, do_sample=False)",
        "answer = processor.batch_decode(out[:, inputs['input_ids'].shape[1]:], skip_special_tokens=True)[0]",
        "print(answer)  # '... <answer>12.54 to 17.83</answer>': start and end in seconds",
    ])


def eval_table(evals: Sequence[EvalRun]) -> str:
    """The markdown table of the evaluations (percentages), one row per dataset."""
    extras = [k for k in TABLE_EXTRAS if any(k in ev.metrics for ev in evals)]
    header = ["dataset", "split", "annotations", *CARD_METRICS, *extras]
    rows = []
    for ev in evals:
        values = [ev.metrics.get(k) for k in (*CARD_METRICS, *extras)]
        cells = ["-" if v is None else (f"{int(v)}" if k == "n" else f"{v:.2f}")
                 for k, v in zip((*CARD_METRICS, *extras), values, strict=True)]
        rows.append([ev.title, ev.split or "-", f"`{ev.annotations}`" if ev.annotations else "-", *cells])
    return _table(header, rows)


def card_body(run: RunInfo, evals: Sequence[EvalRun], *, repo_id: str, base_model: str | None,
              license_note: str | None = None) -> str:
    """The card's markdown body: what was trained, how to use it, the evaluation, how to reproduce it."""
    name = repo_id.split("/")[-1]
    objective = {"grpo": "GRPO", "opd": "Video-OPD"}.get(run.cfg.method, run.cfg.method)
    what = "supervised fine-tuning" if run.kind == "sft" else f"RL post-training ({objective})"
    start = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else f"`{run.cfg.model.model_name_or_path}`"
    parts = [f"# {name}", "",
             f"A temporal video grounding model: {start} after {what} with "
             "timegrpo. Given a video and a description of an event, it "
             "answers the event's start and end time in seconds inside `<answer>...</answer>`.", ""]
    if license_note:
        parts += [license_note, ""]
    parts += ["## Training", "", _table(["setting", "value"], _training_rows(run)), ""]
    if run.last_log is not None:
        shown = {k: v for k, v in run.last_log.items() if isinstance(v, (int, float)) and "/" not in k}
        summary = ", ".join(f"{k} {_fmt(float(v)) if isinstance(v, float) else v}" for k, v in list(shown.items())[:10])
        parts += [f"Training log: {run.logged_steps} logged step(s) in `training_metrics.jsonl`; last: {summary}.", ""]
    parts += ["## How to use", "", "```python", usage_snippet(run, repo_id), "```", ""]
    parts += ["## Evaluation", ""]
    if evals:
        parts += ["R1@m is the share (%) of queries whose top-1 answer has temporal IoU >= m with "
                  "a ground-truth window, mIoU the mean IoU (%). Unparsable answers count as IoU 0. Each "
                  "evaluation's `metrics.json` is under `eval/`.", "", eval_table(evals), ""]
    else:
        parts += ["Not evaluated yet: run `timegrpo eval --model " + repo_id + " ...` and push again with "
                  "`--eval DIR`.", ""]
    parts += ["## Reproduce", "", "The recipe of this run is in this repository as `recipe.yaml` (the resolved "
              "config, every override included). From a timegrpo checkout, the launch command as the recipe "
              "states it:", "", "```bash",
              run.command or "(the recipe states none)", "```", "", "Exactly this run, from the uploaded recipe:",
              "", "```bash", reproduce_command(run.command), "```", ""]
    return "\n".join(parts)


def build_card(run: RunInfo, evals: Sequence[EvalRun], *, repo_id: str, base_model: str | None,
               license: str | None, pipeline_tag: str, datasets: Sequence[str] | None = None) -> Any:
    """The ``huggingface_hub.ModelCard`` (front matter + body) of a run."""
    from huggingface_hub import ModelCard

    note = None
    if license is None:
        license = KNOWN_LICENSES.get(base_model or "", "other")
        if license == "other":
            note = ("**Licence**: this model inherits the licence of its base model"
                    + (f" ([{base_model}](https://huggingface.co/{base_model}))." if base_model else "."))
    data = card_metadata(run, evals, repo_id=repo_id, base_model=base_model, license=license,
                         pipeline_tag=pipeline_tag, datasets=datasets)
    body = card_body(run, evals, repo_id=repo_id, base_model=base_model, license_note=note)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


# ------------------------------------------------------------------------------- assembly and checks
def assemble_folder(checkpoint: Path, folder: Path, run: RunInfo, evals: Sequence[EvalRun], card: Any
                    ) -> tuple[list[str], list[str]]:
    """Fill ``folder`` (empty) with the model files, the recipe, the logs, the evaluations and the card.

    Returns ``(uploaded paths relative to folder, skipped checkpoint entries with their reason)``.
    """
    files, skipped = select_model_files(checkpoint)
    for src in files:
        _place(src, folder / src.name)
    (folder / RECIPE_NAME).write_text(run.recipe_text, encoding="utf-8")
    log = run.recipe_path.parent / "metrics.jsonl"
    if log.is_file():
        shutil.copy2(log, folder / "training_metrics.jsonl")
    for ev in evals:
        target = folder / "eval" / ev.name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ev.path / "metrics.json", target / "metrics.json")
        if (ev.path / "eval_config.json").is_file():
            shutil.copy2(ev.path / "eval_config.json", target / "eval_config.json")
    card.save(folder / "README.md")
    uploaded = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return uploaded, skipped


def check_no_training_state(folder: Path) -> str:
    """Raise when ``folder`` holds a training-state file or a ``state/`` folder; else a one-line summary."""
    bad = [p.relative_to(folder).as_posix() for p in folder.rglob("*")
           if (p.is_dir() and p.name == "state") or (p.is_file() and is_training_state(p.name))]
    if bad:
        raise PushError(f"{folder} holds training state that must not be uploaded: {', '.join(sorted(bad))}")
    return "no state/ folder, optimizer, scheduler or RNG file"


def check_card(folder: Path, n_evals: int) -> str:
    """The card's front matter parses back (``ModelCard.load`` and ``metadata_load``) with ``n_evals`` datasets."""
    from huggingface_hub import ModelCard, metadata_load

    readme = folder / "README.md"
    try:
        card = ModelCard.load(readme)
        meta = metadata_load(readme) or {}
    except Exception as err:  # any parse failure is a broken card
        raise PushError(f"{readme}: the model card's front matter does not parse back: {err}") from err
    for key in ("license", "library_name", "pipeline_tag", "tags"):
        if key not in meta:
            raise PushError(f"{readme}: front matter lacks {key!r}")
    results = card.data.eval_results or []
    datasets = {r.dataset_type for r in results}
    if len(datasets) != n_evals:
        raise PushError(f"{readme}: model-index holds {len(datasets)} datasets, expected {n_evals}")
    return f"front matter parses; model-index: {len(results)} results over {len(datasets)} dataset(s)"


def check_loads(folder: Path, mode: str = "full") -> str:
    """Load the folder back with ``AutoModelForImageTextToText`` / ``AutoProcessor.from_pretrained``.

    ``mode``: ``full`` (real weights, CPU), ``meta`` (meta device: every weight name and shape checked,
    no memory), ``none`` (skip). Any missing, unexpected or mismatched weight is an error.
    """
    if mode not in CHECKS:
        raise ValueError(f"check must be one of {', '.join(CHECKS)}, got {mode!r}")
    if mode == "none":
        return "skipped (check=none)"
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kwargs: dict[str, Any] = {"output_loading_info": True, "dtype": "auto"}
    if mode == "meta":
        kwargs["device_map"] = "meta"
    try:
        model, info = AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
        processor = AutoProcessor.from_pretrained(folder)
    except Exception as err:  # report any loading failure with the folder
        raise PushError(f"{folder} does not load back with from_pretrained: {type(err).__name__}: {err}") from err
    problems = {k: sorted(map(str, v)) for k, v in info.items() if k != "error_msgs" and v}
    if problems or info.get("error_msgs"):
        shown = {k: v[:5] + ([f"... {len(v) - 5} more"] if len(v) > 5 else []) for k, v in problems.items()}
        raise PushError(f"{folder}: weights do not match the model: {shown or info['error_msgs']}. Was the "
                        "checkpoint saved with save_pretrained from the unwrapped model (LoRA merged)?")
    if not getattr(processor, "chat_template", None):
        raise PushError(f"{folder}: the processor has no chat template (chat_template.jinja missing?)")
    n = sum(p.numel() for p in model.parameters())
    return (f"{type(model).__name__} ({n / 1e6:.2f}M parameters, {mode}) and {type(processor).__name__} "
            "with its chat template load back")


# ---------------------------------------------------------------------------------------------- upload
def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(constants.HF_HUB_OFFLINE) or flag


def upload(folder: Path, repo_id: str, *, private: bool = False, revision: str | None = None,
           commit_message: str | None = None, token: str | None = None, api: Any = None) -> str:
    """``create_repo(exist_ok=True)`` (+ the branch ``revision``) then ``upload_folder``; returns the commit URL."""
    from huggingface_hub import HfApi, get_token

    retry = f"the folder is ready at {folder}; retry with `hf upload {repo_id} {folder} .` once it is fixed"
    if _offline():
        raise PushError(f"HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it (and check this machine "
                        f"reaches huggingface.co), or use --dry-run; {retry}")
    token = token or get_token()
    if not token:
        raise PushError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --token "
                        f"(a token with write access); {retry}")
    api = api if api is not None else HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private or None, exist_ok=True, repo_type="model", token=token)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, token=token)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model", revision=revision,
                                 commit_message=commit_message or "Upload model with timegrpo push", token=token)
    except Exception as err:  # network, auth, permission: all reported the same way
        raise PushError(f"upload to {repo_id} failed: {type(err).__name__}: {err}. Check the network, that the "
                        f"token can write to {repo_id.split('/')[0]}, and the repo id; {retry}") from err
    return str(getattr(info, "commit_url", info))


def push_checkpoint(checkpoint: str | Path, repo_id: str, *, dry_run: bool = False, out: str | Path | None = None,
                    config: str | Path | None = None, eval_dirs: Sequence[str | Path] = (),
                    private: bool = False, revision: str | None = None, commit_message: str | None = None,
                    token: str | None = None, license: str | None = None, base_model: str | None = None,
                    datasets: Sequence[str] | None = None, pipeline_tag: str | None = None,
                    check: str = "full", api: Any = None) -> PushResult:
    """Assemble, check and (unless ``dry_run``) upload a checkpoint to ``repo_id``; see the module docstring.

    ``eval_dirs``: ``timegrpo eval`` output folders (``DIR`` or ``NAME=DIR``). ``out``: the upload folder (must
    be empty or absent; default a new temporary folder, deleted after a successful upload). ``license``,
    ``base_model``, ``datasets``, ``pipeline_tag``: front-matter overrides (defaults derived from the run).
    ``check``: how the folder is loaded back (``full``, ``meta`` or ``none``). ``api``: an ``HfApi``-like
    object (tests pass a fake). Raises :class:`PushError` with what to do.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PushError(f"--repo-id {repo_id!r} is not a valid repo id ('user/name'): {err}") from None
    if check not in CHECKS:
        raise PushError(f"check must be one of {', '.join(CHECKS)}, got {check!r}")
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise PushError(f"checkpoint {ckpt} is not a folder: pass output_dir/checkpoint-N")
    run = read_run(ckpt, config)
    evals = read_evals(eval_dirs)
    base = base_model or resolve_base_model(run.cfg.model.model_name_or_path)
    card = build_card(run, evals, repo_id=repo_id, base_model=base, license=license,
                      pipeline_tag=pipeline_tag or _pipeline_tag(ckpt), datasets=datasets)
    folder = _prepare_out(out, ckpt)
    files, skipped = assemble_folder(ckpt, folder, run, evals, card)
    result = PushResult(folder=folder, repo_id=repo_id, files=files, skipped=skipped)
    result.checks["training state"] = check_no_training_state(folder)
    result.checks["model card"] = check_card(folder, len(evals))
    result.checks["from_pretrained"] = check_loads(folder, check)
    if not base:
        result.checks["base_model"] = (f"{run.cfg.model.model_name_or_path!r} leads to no Hub id: the card has no "
                                       "base_model (pass --base-model ID)")
    if dry_run:
        return result
    message = commit_message or f"Upload {ckpt.name} with timegrpo push"
    result.url = upload(folder, repo_id, private=private, revision=revision, commit_message=message,
                        token=token, api=api)
    if out is None:
        shutil.rmtree(folder, ignore_errors=True)
    return result
