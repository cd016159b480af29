"""Data rounds: score -> select -> train, repeated, each stage a file kept under ``DIR/round_N/``
(``timegrpo curriculum timerft --config RECIPE --rounds R --k K [--out DIR]``).

Per round ``r = 1..R`` (:func:`run_round`), with ``M_0`` the recipe's model and ``M_r`` round ``r``'s last checkpoint:

1. *score*: the candidates are answered by ``M_{r-1}`` (:func:`timegrpo.curriculum.score.run_score`, the training
   rollout code, ``curriculum.score_n`` answers each) -> ``round_r/scores.jsonl``;
2. *select*: the strategy's selector for round ``r`` picks ``k`` of them
   (:func:`timegrpo.curriculum.select.run_select`) -> ``round_r/selection.jsonl`` (+ ``.summary.json``);
3. *train*: ``curriculum.epochs_per_round`` epochs of the recipe's ``timegrpo train`` on the selection, from
   ``M_{r-1}`` -> ``round_r/train/checkpoint-N`` (= ``M_r``), with the round's resolved recipe in
   ``round_r/recipe.yaml``;

then ``round_r/done.json``. What is scored and which selector runs is a :class:`RoundStrategy` registered in
:data:`ROUND_STRATEGIES` (the recipe's ``curriculum.strategy``); the driver never branches on its name.
``timerft`` (Time-R1's TimeRFT, SPEC section 1): round 1 scores the pool (``data.train_file``, written as
``DIR/pool.jsonl``) with the base model and draws ``k`` with ``timerft``; every later round re-scores the previous
round's training set with the current model and keeps ``k`` of it with ``timerft_refilter`` (so round ``r``'s
scores are the "re-score after training" of round ``r-1``). A strategy whose rounds all select from the whole pool
(``narrowing=False``) is the shape Video-OPD's TVDF needs.

Choices where Time-R1 is silent (ours): every round is a fresh ``timegrpo train`` run from the previous round's
weights (new optimiser state, the recipe's schedule over the round's steps, the reference model of ``beta != 0``
is the round's starting model); selections are drawn with ``train.seed``; ``data.max_train_samples`` limits the
pool. A round whose selector keeps no sample stops the run with a message.

Launching, also with several GPUs: the driver is one process (scoring runs in it, on one GPU when there is one;
its model is freed before training starts). Each round's training is a subprocess
``<curriculum.launch> -m timegrpo.train --config round_r/recipe.yaml``: with ``curriculum.launch`` empty that is
this Python interpreter (one process, as ``timegrpo train``); for several GPUs give the accelerate prefix, e.g.
``timegrpo curriculum timerft --config recipes/time_r1_timerft_qwen2_5_vl_7b.yaml --curriculum.launch
"accelerate launch --config_file launch/zero3_offload.yaml"``. Do not start the driver itself under
``accelerate launch`` (scoring refuses to run in several processes).

Resuming: rerun the same command. A round with ``done.json`` is not redone (its checkpoint is the next round's
model); inside an unfinished round, scoring resumes its file, selection is redone (deterministic), and training
resumes exactly from the latest ``round_r/train/checkpoint-N``. Raising ``--rounds`` later continues the run.
``DIR/rounds.json`` keeps the settings a resumed run must share (strategy, k, pool, base model, seed) and a summary
of every finished round.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timegrpo.config import ConfigError, RecipeConfig, save_config
from timegrpo.curriculum.config import CurriculumScoreConfig, ScoreSampling, SelectConfig
from timegrpo.curriculum.score import say
from timegrpo.evaluate.config import VIDEO_FIELDS, EvalError, VideoOptions
from timegrpo.evaluate.predictions import write_atomic
from timegrpo.registry import Registry


class RoundError(EvalError):
    """A rounds run cannot go on (a stage failed, a selection came out empty, the folder holds another run);
    the message says what to do."""


@dataclass(frozen=True)
class RoundStrategy:
    """How a rounds curriculum chooses its data: round 1's selector over the pool scored by the base model,
    later rounds' selector, and whether later rounds score and select from the previous round's selection
    (``narrowing``, TimeRFT) or from the whole pool again."""

    first_selector: str
    later_selector: str
    narrowing: bool
    #: Whether the selector needs the teacher's IoUs (``train.teacher_model_name_or_path`` scores the pool too).
    teacher: bool = False

    def selector(self, r: int) -> str:
        """The :data:`timegrpo.curriculum.select.SELECTORS` name of round ``r`` (1-based)."""
        return self.first_selector if r == 1 else self.later_selector

    def candidates(self, r: int, pool: Path, previous: Path | None) -> Path:
        """The annotation file round ``r`` scores and selects from."""
        return previous if self.narrowing and r > 1 and previous is not None else pool


ROUND_STRATEGIES: Registry[RoundStrategy] = Registry("round strategy")
ROUND_STRATEGIES.register("timerft", RoundStrategy("timerft", "timerft_refilter", narrowing=True))
for _name in ("tvdf", "tvdf_even", "tvdf_buckets", "tvdf_gaussian"):  # Video-OPD: every round from the whole pool
    ROUND_STRATEGIES.register(_name, RoundStrategy(_name, _name, narrowing=False, teacher=True))


def latest_checkpoint(folder: Path) -> Path | None:
    """The complete ``checkpoint-N`` folder of ``folder`` with the largest ``N`` (complete: its
    ``state/`` holds the trainer's counters, written last, :data:`timegrpo.trainer.loop.STATE_FILE`)."""
    from timegrpo.trainer.loop import STATE_FILE

    found = [p for p in folder.glob("checkpoint-*")
             if p.name.split("-")[-1].isdigit() and (p / "state" / STATE_FILE).is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def rounds_dir(cfg: RecipeConfig) -> Path:
    """``curriculum.out``, or ``<train.output_dir>/rounds``."""
    return Path(cfg.curriculum.out or Path(cfg.train.output_dir) / "rounds")


def score_config(cfg: RecipeConfig, model: str, candidates: Path, out: Path, teacher_scores: Path | None = None
                 ) -> CurriculumScoreConfig:
    """The scorer's options for one round: the recipe's prompt, video sampling, dtype and frame cache, and the
    ``curriculum.score_*`` decoding; with ``teacher_scores``, the recipe's teacher also answers
    (``curriculum.teacher_n`` times, rows shared by every round in that file)."""
    c, d, m = cfg.curriculum, cfg.data, cfg.model
    teacher = cfg.train.teacher_model_name_or_path if teacher_scores is not None else None
    video = VideoOptions(**{name: getattr(d, name) for name in VIDEO_FIELDS})
    sampling = ScoreSampling(max_new_tokens=c.score_max_new_tokens or cfg.train.max_completion_length,
                             do_sample=c.score_do_sample, temperature=c.score_temperature, seed=cfg.train.seed)
    return CurriculumScoreConfig(model=model, annotations=str(candidates), out=str(out), n=c.score_n,
                                 format="moment_detr", template=d.prompt_template, batch_size=c.score_batch_size,
                                 dtype=m.torch_dtype, attn_implementation=m.attn_implementation,
                                 frame_cache=d.frame_cache_dir, video=video, sampling=sampling, teacher=teacher,
                                 teacher_n=c.teacher_n, teacher_scores=None if teacher is None else str(teacher_scores))


def round_recipe(cfg: RecipeConfig, r: int, model: str, selection: Path, train_dir: Path) -> RecipeConfig:
    """The recipe of round ``r``'s training: the given one on ``selection`` from ``model`` for
    ``curriculum.epochs_per_round`` epochs into ``train_dir``, resuming its latest checkpoint when there is one."""
    t, c = cfg.train, cfg.curriculum
    resume = latest_checkpoint(train_dir)
    train = dataclasses.replace(
        t, output_dir=str(train_dir), num_train_epochs=c.epochs_per_round, max_steps=-1,
        resume_from_checkpoint=None if resume is None else str(resume),
        run_name=f"{t.run_name or Path(t.output_dir).name}-round{r}", push_to_hub=t.push_to_hub and r == c.rounds)
    data = dataclasses.replace(cfg.data, train_file=str(selection), format="moment_detr", on_bad="error",
                               max_train_samples=None, durations=None)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, model_name_or_path=model), data=data,
                               train=train)


def launch_command(cfg: RecipeConfig, recipe: Path) -> list[str]:
    """``<curriculum.launch or this python> -m timegrpo.train --config RECIPE``.

    >>> cfg = RecipeConfig()
    >>> cfg.curriculum.launch = "accelerate launch --config_file launch/ddp.yaml"
    >>> launch_command(cfg, Path("r/recipe.yaml"))[-5:]
    ['launch/ddp.yaml', '-m', 'timegrpo.train', '--config', 'r/recipe.yaml']
    """
    prefix = shlex.split(cfg.curriculum.launch) or [sys.executable]
    return [*prefix, "-m", "timegrpo.train", "--config", str(recipe)]


def train_round(cfg: RecipeConfig, r: int, model: str, selection: Path, folder: Path) -> Path:
    """Round ``r``'s training as a subprocess (see the module docstring); returns its last checkpoint."""
    recipe = folder / "recipe.yaml"
    round_cfg = round_recipe(cfg, r, model, selection, folder / "train")
    command = launch_command(cfg, recipe)
    save_config(round_cfg, recipe, header=f"round {r} of `timegrpo curriculum`: {shlex.join(command)}")
    resumed = round_cfg.train.resume_from_checkpoint
    say(f"round {r}: training on {selection}" + (f" (resuming {resumed})" if resumed else "") + f": {shlex.join(command)}")
    rc = subprocess.run(command, check=False).returncode
    last = latest_checkpoint(folder / "train")
    if rc != 0 or last is None:
        raise RoundError(f"round {r}: training exited with status {rc} (command: {shlex.join(command)}; run folder "
                         f"{folder / 'train'}); fix the cause and rerun the same command: it resumes")
    return last


def score_and_select(cfg: RecipeConfig, strategy: RoundStrategy, r: int, model: str, candidates: Path,
                     folder: Path) -> dict[str, Any]:
    """Stages 1 and 2 of round ``r``: scores of ``candidates`` by ``model``, then the round's selector; returns
    the selection summary (:func:`timegrpo.curriculum.select.run_select`)."""
    import gc

    import torch

    from timegrpo.curriculum.score import run_score
    from timegrpo.curriculum.tvdf import run_selector

    scores = folder / "scores.jsonl"
    say(f"round {r}: scoring {candidates} with {model}")
    teacher_scores = folder.parent / "teacher_scores.jsonl" if strategy.teacher else None
    run_score(score_config(cfg, model, candidates, scores, teacher_scores))
    gc.collect()  # the scoring model leaves the device before training starts
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    method = strategy.selector(r)
    summary = run_selector(SelectConfig(method=method, annotations=str(candidates), scores=str(scores),
                                        k=cfg.curriculum.k, seed=cfg.train.seed,
                                        out=str(folder / "selection.jsonl"), format="moment_detr"))
    say(f"round {r}: {method} kept {summary['selected']['n']} of {summary['pool']['n']} "
        f"(mean IoU {summary['pool']['mean_iou']:.3f} -> {summary['selected']['mean_iou'] or 0:.3f})")
    if not summary["selected"]["n"]:
        p = summary["pool"]
        raise RoundError(f"round {r}: {method} kept none of the {p['n']} samples of {candidates} (mean IoU "
                         f"{p['mean_iou']:.3f}; scores in {scores}, summary in {folder / 'selection.summary.json'}); "
                         "its rule excludes them all (timerft drops IoU 0, timerft_refilter keeps 0 < IoU <= 0.7, the "
                         "tvdf selectors need a teacher mean IoU >= 0.5): start from a model that solves some of the "
                         "pool (an SFT warm start), or stop at the last round")
    return summary


def run_round(cfg: RecipeConfig, strategy: RoundStrategy, r: int, model: str, pool: Path, previous: Path | None,
              out: Path) -> dict[str, Any]:
    """One round (score, select, train) unless ``round_r/done.json`` says it is finished; returns that record."""
    folder = out / f"round_{r}"
    done = folder / "done.json"
    if done.is_file():
        record = json.loads(done.read_text(encoding="utf-8"))
        say(f"round {r}: finished before ({record['checkpoint']})")
        return record
    folder.mkdir(parents=True, exist_ok=True)
    candidates = strategy.candidates(r, pool, previous)
    selected = folder / "selection.summary.json"  # written last by the selector: scoring and selection are done
    if selected.is_file():
        summary = json.loads(selected.read_text(encoding="utf-8"))
    else:
        summary = score_and_select(cfg, strategy, r, model, candidates, folder)
    checkpoint = train_round(cfg, r, model, folder / "selection.jsonl", folder)
    record = {"round": r, "model": model, "candidates": str(candidates), "scores": str(folder / "scores.jsonl"),
              "selector": strategy.selector(r), "selection": str(folder / "selection.jsonl"),
              "n_candidates": summary["pool"]["n"], "n_selected": summary["selected"]["n"],
              "candidates_mean_iou": summary["pool"]["mean_iou"], "selected_mean_iou": summary["selected"]["mean_iou"],
              "checkpoint": str(checkpoint)}
    write_atomic(done, json.dumps(record, indent=2) + "\n")
    return record


def prepare(cfg: RecipeConfig, out: Path) -> tuple[RoundStrategy, Path, dict[str, Any]]:
    """The strategy, the pool file (``DIR/pool.jsonl``, written once from ``data.train_file``) and the
    ``rounds.json`` settings; a folder holding a run with other settings is refused."""
    from timegrpo.data.convert import write_moment_detr
    from timegrpo.trainer.build import load_samples

    c = cfg.curriculum
    if c.strategy not in ROUND_STRATEGIES:
        raise ConfigError(f"curriculum.strategy: {c.strategy!r} is not one of {', '.join(ROUND_STRATEGIES.names())}")
    strategy = ROUND_STRATEGIES.get(c.strategy)
    settings = {"strategy": c.strategy, "k": c.k, "train_file": str(cfg.data.train_file),
                "max_train_samples": cfg.data.max_train_samples, "base_model": cfg.model.model_name_or_path,
                "seed": cfg.train.seed}
    if strategy.teacher:
        teacher = cfg.train.teacher_model_name_or_path
        if not teacher:
            raise ConfigError(f"train.teacher_model_name_or_path: curriculum.strategy {c.strategy} selects with a "
                              "teacher's answers: name the teacher (the OPD recipe's)")
        if c.teacher_n > 1 and not c.score_do_sample:
            raise ConfigError(f"curriculum.score_do_sample: the teacher answers teacher_n = {c.teacher_n} times; set "
                              "score_do_sample: true (or teacher_n: 1)")
        settings.update(teacher=teacher, teacher_n=c.teacher_n)
    state = out / "rounds.json"
    if state.is_file():
        old = json.loads(state.read_text(encoding="utf-8"))["settings"]
        diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v]
        if diffs:
            raise RoundError(f"{out} holds rounds made with other settings ({'; '.join(diffs)}); use another "
                             "--curriculum.out, or delete the folder")
    else:
        write_atomic(state, json.dumps({"settings": settings, "rounds": []}, indent=2) + "\n")
    pool = out / "pool.jsonl"
    if not pool.is_file():  # video paths made absolute: later files are read from other folders, without video_dir
        samples = [dataclasses.replace(s, video=str(Path(s.video).resolve()) if s.video else None)
                   for s in load_samples(cfg)]
        write_moment_detr(samples, pool)
    return strategy, pool, settings


def run_rounds(cfg: RecipeConfig) -> dict[str, Any]:
    """The whole rounds run (see the module docstring); returns (and writes to ``DIR/rounds.json``) the
    settings and one record per finished round, the last one's checkpoint under ``final_model``."""
    out = rounds_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    strategy, pool, settings = prepare(cfg, out)
    model, previous = cfg.model.model_name_or_path, None
    records: list[dict[str, Any]] = []
    for r in range(1, cfg.curriculum.rounds + 1):
        record = run_round(cfg, strategy, r, model, pool, previous, out)
        records.append(record)
        model, previous = record["checkpoint"], Path(record["selection"])
        summary = {"settings": settings, "rounds": records, "final_model": model}
        write_atomic(out / "rounds.json", json.dumps(summary, indent=2) + "\n")
    return {"out": str(out), "rounds": len(records), "final_model": model}
