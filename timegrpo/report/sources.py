"""The inputs of a report: evaluation folders (``timegrpo eval --out``) and training runs (``output_dir`` with
``metrics.jsonl``), found in the paths given.

A path is an evaluation folder when it holds ``metrics.json``, a training run when it holds ``metrics.jsonl``
(a ``timegrpo train`` / ``sft`` output_dir, or the demo's ``grpo/`` and ``sft/``), else a folder of such folders
(its sub-folders that are either, in name order; the demo's output is one). An evaluation's ground truth comes
from the annotation file its ``eval_config.json`` names, read with the same format, policy and durations as the
eval did; when that file is gone the page says so and shows the eval's own ``plots/*.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timegrpo.errors import UserError

#: The columns of the cross-benchmark table, per benchmark.
TABLE_METRICS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU")


class ReportError(UserError, ValueError):
    """An input the report cannot use; the message names the path and what to pass instead."""


@dataclass
class EvalSource:
    """One evaluation folder: its benchmark (``benchmark``: the annotation file, the table's column; ``title``:
    its format and metric set), the ``model`` it evaluated, ``metrics``, the prediction ``records`` and, aligned with
    them, the annotated ``samples`` (None when not found: ``note``)."""

    path: Path
    benchmark: str
    title: str
    model: str
    metrics: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    samples: list[Any] | None = None
    note: str | None = None


@dataclass
class RunSource:
    """One training run: its ``logs`` (``metrics.jsonl`` lines, in order) and a few recipe fields."""

    path: Path
    logs: list[dict[str, Any]]
    recipe: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The json objects of a jsonl file; a partial last line (a run still writing, or killed) is left out."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def model_label(path: str) -> str:
    """A short name for a checkpoint: a Hub id as is, a folder by its last two parts.

    >>> model_label("/home/me/outputs/run/checkpoint-200"), model_label("Qwen/Qwen2.5-VL-7B-Instruct")
    ('run/checkpoint-200', 'Qwen/Qwen2.5-VL-7B-Instruct')
    """
    p = Path(path)
    return "/".join(p.parts[-2:]) if p.is_absolute() or p.exists() else path


def _samples_for(config: dict[str, Any], records: list[dict[str, Any]]) -> tuple[list[Any] | None, str | None]:
    """The annotated samples of ``records`` (same order), from the file ``eval_config.json`` names."""
    from timegrpo.data.formats import load_annotations

    ann = config.get("annotations") if isinstance(config.get("annotations"), dict) else {}
    path = ann.get("path")
    if not path or not Path(path).is_file():
        return None, f"annotation file {path or '(not recorded)'} not found: no ground truth to draw"
    samples, _ = load_annotations(path, ann.get("format"), on_bad=ann.get("on_bad") or "clip",
                                  durations=ann.get("durations"))
    by_qid = {s.qid: s for s in samples}
    missing = [str(r.get("qid")) for r in records if str(r.get("qid")) not in by_qid]
    if missing:
        return None, f"{len(missing)} predicted qids are not in {path} (e.g. {missing[0]}): no ground truth to draw"
    return [by_qid[str(r["qid"])] for r in records], None


def read_eval_source(folder: Path) -> EvalSource:
    """An :class:`EvalSource` from a ``timegrpo eval`` output folder."""
    from timegrpo.hub.run import read_eval

    run = read_eval(folder)
    top = _read_json(folder / "metrics.json")
    config_path = folder / "eval_config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    model = config.get("model", {}).get("path") if isinstance(config.get("model"), dict) else None
    ann = config.get("annotations", {}).get("path") if isinstance(config.get("annotations"), dict) else None
    preds = folder / "predictions.jsonl"
    records = read_jsonl(preds) if preds.is_file() else []
    samples, note = _samples_for(config, records) if records else (None, "no predictions.jsonl")
    fmt = config.get("annotations", {}).get("format") if isinstance(config.get("annotations"), dict) else None
    title = f"{fmt or 'unknown'} annotations, {top.get('benchmark') or 'grounding'} metrics"
    return EvalSource(path=folder, benchmark=str(ann or folder.name), title=title,
                      model=model_label(model) if model else folder.name, metrics={**run.metrics, **top},
                      records=records, samples=samples, note=note)


def read_run_source(folder: Path) -> RunSource:
    """A :class:`RunSource` from a training output_dir (``metrics.jsonl``, optionally ``config.yaml``)."""
    logs = read_jsonl(folder / "metrics.jsonl")
    recipe: dict[str, Any] = {}
    if (folder / "config.yaml").is_file():
        from timegrpo.config import ConfigError, load_recipe

        try:
            cfg = load_recipe(folder / "config.yaml", [])
        except ConfigError:
            cfg = None
        if cfg is not None:
            recipe = _recipe_fields(cfg, (folder / "config.yaml").read_text(encoding="utf-8"))
    return RunSource(path=folder, logs=logs, recipe=recipe)


def _recipe_fields(cfg: Any, text: str) -> dict[str, Any]:
    """What the page shows of a run's recipe: the SFT section for ``timegrpo sft`` runs (their config.yaml's
    launch line), else the RL one."""
    from timegrpo.hub.run import launch_command

    common = {"model": cfg.model.model_name_or_path, "train file": cfg.data.train_file,
              "prompt": cfg.data.prompt_template}
    if "sft" in (launch_command(text) or "").split():
        return {"stage": "sft", **common, "learning rate": cfg.sft.learning_rate,
                "batch": cfg.sft.per_device_train_batch_size * cfg.sft.gradient_accumulation_steps}
    return {"stage": cfg.method, **common, "learning rate": cfg.train.learning_rate, "G": cfg.train.num_generations,
            "beta": cfg.train.beta, "rewards": ", ".join(cfg.train.reward_funcs)}


def _kind(folder: Path) -> str | None:
    if (folder / "metrics.json").is_file():
        return "eval"
    if (folder / "metrics.jsonl").is_file():
        return "run"
    return None


def find_sources(paths: list[str | Path]) -> tuple[list[EvalSource], list[RunSource]]:
    """The evaluations and runs in ``paths`` (see the module docstring); a path with none is an error."""
    evals: list[EvalSource] = []
    runs: list[RunSource] = []
    for given in paths:
        folder = Path(given)
        if not folder.is_dir():
            raise ReportError(f"{folder} is not a folder: pass `timegrpo eval --out` folders and training "
                              "output_dirs (or folders holding them)")
        found = [folder] if _kind(folder) else sorted(p for p in folder.iterdir() if p.is_dir() and _kind(p))
        if not found:
            raise ReportError(f"{folder} holds no metrics.json (an eval folder) or metrics.jsonl (a training run), "
                              "nor do its sub-folders")
        for f in found:
            if _kind(f) == "eval":
                evals.append(read_eval_source(f))
            else:
                runs.append(read_run_source(f))
    return evals, runs
