"""Finding what a checkpoint is: the training run behind it and the evaluations of it.

:func:`read_run` gives the :class:`RunInfo` of a checkpoint: the run's resolved recipe (``config.yaml`` next to
the checkpoint, i.e. in the run's ``output_dir``, or the file given as ``config``), the launch command its first
line states, the step, the model type and a summary of the run's ``metrics.jsonl``. :func:`read_evals` reads the
evaluation folders (each a ``timegrpo eval`` output with ``metrics.json`` and optionally ``eval_config.json``)
into :class:`EvalRun` records. :func:`resolve_base_model` follows a local start model back to a Hub id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timegrpo.errors import UserError

#: Metrics of the ``model-index`` (percentages, as :func:`timegrpo.metrics.grounding_metrics` gives them).
CARD_METRICS: tuple[str, ...] = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")
#: Display names of the benchmarks (keys: annotation format / benchmark names used across timegrpo).
DATASET_NAMES: dict[str, str] = {
    "charades_sta": "Charades-STA", "activitynet": "ActivityNet Captions", "tacos": "TACoS",
    "tacos_2dtan": "TACoS", "qvhighlights": "QVHighlights", "moment_detr": "QVHighlights",
    "rextime": "ReXTime", "nextgqa": "NExT-GQA", "time_r1": "TimeRFT (Time-R1)", "tvgbench": "TVGBench",
    "synthetic": "timegrpo synthetic",
}


class PushError(UserError, RuntimeError):
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
class RunInfo:
    """The training run behind a checkpoint: its config, recipe text, launch command and log."""

    cfg: Any  # the run's whole recipe (timegrpo.config)
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


# ------------------------------------------------------------------------------------------------- files
def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PushError(f"{path}: {what} is not valid JSON ({err}); rerun `timegrpo eval` to rewrite it") from None


def _load_recipe(path: Path) -> Any:
    """The recipe config of ``path`` (no overrides); raises ``timegrpo.config.ConfigError``."""
    from timegrpo.config import load_recipe

    return load_recipe(path, [])


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


def checkpoint_step(checkpoint: Path) -> int | None:
    """The step of a ``checkpoint-STEP`` folder, else None.

    >>> checkpoint_step(Path("out/checkpoint-120")), checkpoint_step(Path("out/final"))
    (120, None)
    """
    m = re.fullmatch(r"checkpoint-(\d+)", checkpoint.name)
    return int(m.group(1)) if m else None


def checkpoint_model_type(checkpoint: Path) -> str:
    """``config.json``'s ``model_type`` of a checkpoint (``""`` when absent); no ``config.json`` is an error."""
    config = checkpoint / "config.json"
    if not config.is_file():
        raise PushError(f"{checkpoint} has no config.json: pass a checkpoint-N folder (or any folder written "
                        "by save_pretrained), not the run's output_dir or its state/ folder")
    data = _read_json(config, "config.json")
    return str(data.get("model_type", "")) if isinstance(data, dict) else ""


def checkpoint_pipeline_tag(checkpoint: Path) -> str:
    """``video-text-to-text`` when the processor has a video processor, else ``image-text-to-text``."""
    if (checkpoint / "video_preprocessor_config.json").is_file():
        return "video-text-to-text"
    proc = checkpoint / "processor_config.json"
    if proc.is_file():
        data = _read_json(proc, "processor_config.json")
        if isinstance(data, dict) and "video_processor" in data:
            return "video-text-to-text"
    return "image-text-to-text"


def log_summary(metrics_jsonl: Path) -> tuple[int, dict[str, Any] | None]:
    """``(logged lines, the last line as a dict or None when it does not parse)`` of a ``metrics.jsonl``."""
    lines = [line for line in metrics_jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return 0, None
    try:
        last = json.loads(lines[-1])
    except json.JSONDecodeError:
        return len(lines), None
    return len(lines), last if isinstance(last, dict) else None


# --------------------------------------------------------------------------------------------------- run
def read_run(checkpoint: Path, config: str | Path | None = None) -> RunInfo:
    """The :class:`RunInfo` of ``checkpoint`` from ``config`` (or the ``config.yaml`` :func:`find_recipe` finds)."""
    from timegrpo.config import ConfigError

    path = Path(config) if config is not None else find_recipe(checkpoint)
    if path is None:
        raise PushError(f"no config.yaml in {checkpoint} or {checkpoint.parent} (the run's output_dir): pass the "
                        "run's recipe with --config PATH")
    if not path.is_file():
        raise PushError(f"--config {path} does not exist")
    try:
        cfg = _load_recipe(path)
    except ConfigError as err:
        raise PushError(f"{path} is not a timegrpo recipe: {err}") from None
    text = path.read_text(encoding="utf-8")
    log = path.parent / "metrics.jsonl"
    logged, last = log_summary(log) if log.is_file() else (0, None)
    return RunInfo(cfg=cfg, recipe_text=text, recipe_path=path, command=launch_command(text),
                   step=checkpoint_step(checkpoint), model_type=checkpoint_model_type(checkpoint),
                   logged_steps=logged, last_log=last)


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
        from timegrpo.config import ConfigError

        try:
            parent = _load_recipe(recipe).model.model_name_or_path
        except ConfigError:
            return None
        if Path(parent).resolve() != path.resolve():
            return resolve_base_model(parent, depth - 1)
    return None


# ------------------------------------------------------------------------------------------- evaluations
def _split_eval_spec(spec: str | Path) -> tuple[str | None, Path]:
    text = str(spec)
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        return name.strip() or None, Path(path)
    return None, Path(text)


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
