"""The model card (``README.md``) of a checkpoint: YAML front matter and a markdown body.

The front matter (:func:`card_metadata`) has ``license``, ``base_model``, ``library_name``, ``pipeline_tag``,
``tags``, ``datasets`` and a ``model-index`` with R1@0.3/0.5/0.7 and mIoU (:data:`CARD_METRICS`) per evaluated
dataset. The licence is the base model's when :data:`KNOWN_LICENSES` knows it, else ``other`` pointing at the
base model. The body (:func:`card_body`) says what was trained and how (a table of the recipe's settings and the
last line of the training log), how to use the model (:func:`usage_snippet`: Python with the training prompt and
video sampling), the evaluation table (:func:`eval_table`) and how to reproduce the run (``recipe.yaml``).
Each training ``method`` is named through one table, :data:`METHOD_NAMES`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timegrpo.hub.run import CARD_METRICS, EvalRun, RunInfo

#: Extra columns of the card's evaluation table when ``metrics.json`` has them (``n_skipped``: queries left out
#: of ``n`` by the annotation reader or for an unreadable video, shown beside ``n``).
TABLE_EXTRAS: tuple[str, ...] = ("format_rate", "n", "n_skipped")
#: A Hugging Face Hub repository id (``owner/name``).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(value: str | None) -> bool:
    """``owner/name`` and not a file or folder here: what may go into ``datasets:`` or be shown as is.

    >>> is_hub_id("lmms-lab/charades_sta"), is_hub_id("/data/train.jsonl"), is_hub_id("charades_sta"), is_hub_id(None)
    (True, False, False, False)
    """
    return bool(value) and HUB_ID.match(str(value)) is not None and not Path(str(value)).exists()


def public(value: str | None) -> str:
    """A path or id as the card may show it: a Hub id as is, a local path by its name only (no folders of the
    machine that trained it).

    >>> public("Qwen/Qwen2.5-VL-7B-Instruct"), public("/home/me/data/charades/train.jsonl"), public(None)
    ('Qwen/Qwen2.5-VL-7B-Instruct', 'train.jsonl (local file)', '-')
    """
    if not value:
        return "-"
    return str(value) if is_hub_id(value) else f"{Path(str(value)).name} (local file)"


def public_command(command: str | None) -> str | None:
    """``command`` with every absolute path replaced by its name.

    >>> public_command("accelerate launch -m timegrpo.train --config /home/me/r.yaml --data.video_dir=/mnt/v")
    'accelerate launch -m timegrpo.train --config r.yaml --data.video_dir=v'
    """
    if command is None:
        return None
    return re.sub(r"(?<![\w.])/[^\s=]+", lambda m: Path(m.group(0)).name, command)
TASK_TYPE = "temporal-video-grounding"
TASK_NAME = "Temporal Video Grounding"
#: Licences of the Hub base models the shipped recipes start from (anything else: ``other`` unless given).
KNOWN_LICENSES: dict[str, str] = {
    "Qwen/Qwen2-VL-2B-Instruct": "apache-2.0",
    "Qwen/Qwen2-VL-7B-Instruct": "apache-2.0",
    "Qwen/Qwen2.5-VL-7B-Instruct": "apache-2.0",
    "Qwen/Qwen3-VL-8B-Instruct": "apache-2.0",
}
#: The name of the run's recipe in the upload folder.
RECIPE_NAME = "recipe.yaml"


@dataclass(frozen=True)
class MethodNames:
    """How the card names a recipe ``method``: its Hub ``tag``, its ``short`` name (in the opening sentence)
    and its ``long`` name (in the training table)."""

    tag: str
    short: str
    long: str


#: The card's names of each recipe ``method``; a method not listed is named by its key everywhere.
METHOD_NAMES: dict[str, MethodNames] = {
    "grpo": MethodNames(tag="grpo", short="GRPO", long="GRPO"),
    "gspo": MethodNames(tag="gspo", short="GSPO", long="GSPO (sequence-level importance ratio)"),
    "cispo": MethodNames(tag="cispo", short="CISPO", long="CISPO (clipped IS-weight policy optimisation)"),
    "sapo": MethodNames(tag="sapo", short="SAPO", long="SAPO (soft adaptive policy optimisation)"),
    "opd": MethodNames(tag="video-opd", short="Video-OPD", long="Video-OPD (on-policy distillation)"),
}


def method_names(method: str) -> MethodNames:
    """The :class:`MethodNames` of ``method``.

    >>> method_names("opd").tag, method_names("grpo").short, method_names("new").long
    ('video-opd', 'GRPO', 'new')
    """
    return METHOD_NAMES.get(method, MethodNames(tag=method, short=method, long=method))


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


# ------------------------------------------------------------------------------------------ front matter
def card_tags(run: RunInfo) -> list[str]:
    """``timegrpo``, the objective (``grpo`` / ``video-opd`` / ``sft``), ``temporal-video-grounding``, extras
    (the loss aggregation when not plain ``grpo``, ``lora``)."""
    cfg = run.cfg
    if run.kind == "sft":
        tags = ["timegrpo", "sft"]
    else:
        tags = ["timegrpo", method_names(cfg.method).tag, "reinforcement-learning"]
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
    if datasets is None:  # only Hub dataset ids: the data files the run read from the Hub, if any
        d = run.cfg.data
        datasets = list(dict.fromkeys(f for f in (d.train_file, d.eval_file) if is_hub_id(f)))
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


# ------------------------------------------------------------------------------------------------ tables
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _rewards_line(t: Any) -> str:
    weights = list(t.reward_weights) if t.reward_weights else [1.0] * len(t.reward_funcs)
    return ", ".join(f"`{name}` x {_fmt(float(w))}" for name, w in zip(t.reward_funcs, weights, strict=True))


def _rl_rows(run: RunInfo) -> list[tuple[str, str]]:
    cfg, t = run.cfg, run.cfg.train
    objective = method_names(cfg.method).long
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
        rows.append(("teacher", f"`{public(t.teacher_model_name_or_path)}`"))
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
        ("train data", f"`{public(d.train_file)}` (format `{d.format or 'auto'}`)"),
        ("eval data", f"`{public(d.eval_file)}`" if d.eval_file else "-"),
        ("video sampling", f"{frames}, total_pixels {_fmt(d.total_pixels)}, min_pixels {d.min_pixels}"),
        ("prompt template", f"`{d.prompt_template}`"),
        ("start model", f"`{public(cfg.model.model_name_or_path)}`"),
    ]
    return rows


def eval_table(evals: Sequence[EvalRun]) -> str:
    """The markdown table of the evaluations (percentages), one row per dataset."""
    extras = [k for k in TABLE_EXTRAS if any(k in ev.metrics for ev in evals)]
    header = ["dataset", "split", "annotations", *CARD_METRICS, *extras]
    rows = []
    for ev in evals:
        values = [ev.metrics.get(k) for k in (*CARD_METRICS, *extras)]
        cells = ["-" if v is None else (f"{int(v)}" if k.startswith("n") else f"{v:.2f}")
                 for k, v in zip((*CARD_METRICS, *extras), values, strict=True)]
        rows.append([ev.title, ev.split or "-", f"`{ev.annotations}`" if ev.annotations else "-", *cells])
    return _table(header, rows)


# ------------------------------------------------------------------------------------------------ usage
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


# ------------------------------------------------------------------------------------------------- card
def card_body(run: RunInfo, evals: Sequence[EvalRun], *, repo_id: str, base_model: str | None,
              license_note: str | None = None) -> str:
    """The card's markdown body: what was trained, how to use it, the evaluation, how to reproduce it."""
    name = repo_id.split("/")[-1]
    what = ("supervised fine-tuning" if run.kind == "sft"
            else f"RL post-training ({method_names(run.cfg.method).short})")
    start = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else f"`{public(run.cfg.model.model_name_or_path)}`"
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
              public_command(run.command) or "(the recipe states none)", "```", "",
              "Exactly this run, from the uploaded recipe:", "", "```bash",
              reproduce_command(public_command(run.command)), "```", ""]
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
