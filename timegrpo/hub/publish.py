"""Publishing a checkpoint: the upload folder, its checks, and the Hub upload.

:func:`push_checkpoint` is what ``timegrpo push`` and the trainer (``push_to_hub: true``) call. It

1. reads the run (:func:`timegrpo.hub.run.read_run`: the resolved recipe ``config.yaml`` next to the checkpoint,
   i.e. in the run's ``output_dir``, or the file given as ``config``) and the evaluation folders
   (:func:`timegrpo.hub.run.read_evals`: each a ``timegrpo eval`` output with ``metrics.json`` and optionally
   ``eval_config.json``);
2. assembles an upload folder: the checkpoint's top-level files (weights, ``config.json``,
   ``generation_config.json``, processor/tokenizer files, ``chat_template.jinja``), never a sub-folder
   (``state/`` holds Accelerate's optimizer/RNG state, DeepSpeed writes ``global_stepN/``) nor a training-state
   file (:data:`TRAINING_STATE_PATTERNS`); plus ``recipe.yaml`` (the recipe, verbatim), ``training_metrics.jsonl``
   (the run's ``metrics.jsonl``), ``eval/NAME/metrics.json`` and a model card ``README.md``
   (:func:`timegrpo.hub.card.build_card`) whose YAML front matter has ``license``, ``base_model``,
   ``library_name``, ``pipeline_tag``, ``tags``, ``datasets`` and a ``model-index`` with R1@0.3/0.5/0.7 and mIoU
   per evaluated dataset;
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
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timegrpo.hub.card import RECIPE_NAME, build_card
from timegrpo.hub.run import (
    EvalRun,
    PushError,
    RunInfo,
    checkpoint_pipeline_tag,
    read_evals,
    read_run,
    resolve_base_model,
)

#: Checkpoint files that are training state, never uploaded (sub-folders such as ``state/`` never are either).
TRAINING_STATE_PATTERNS: tuple[str, ...] = (
    "optimizer*", "scheduler*", "scaler*", "rng_state*", "random_states*", "custom_checkpoint*",
    "trainer_state.json", "training_args.bin", "latest", "zero_to_fp32.py", "*.pkl", "pytorch_model_fsdp*",
)
#: The load-back checks :func:`check_loads` knows.
CHECKS = ("full", "meta", "none")


@dataclass
class PushResult:
    """What :func:`push_checkpoint` did: the upload ``folder``, its files, what was left out, the checks."""

    folder: Path
    repo_id: str
    files: list[str]
    skipped: list[str]
    checks: dict[str, str] = field(default_factory=dict)
    url: str | None = None  # the commit URL; None for a dry run


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
                      pipeline_tag=pipeline_tag or checkpoint_pipeline_tag(ckpt), datasets=datasets)
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
