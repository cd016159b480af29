"""``timegrpo demo --method opd``: Video-OPD (SPEC section 3) end to end on CPU, beside GRPO for the same wall time.

1. the grounding demo's synthetic benchmark (train boundaries jittered by ``label_jitter``, held-out exact), tiny
   model and SFT warm start on the noisy labels (:mod:`timegrpo.demo`), for ``sft_steps`` (600 here against the
   grounding demo's 1000: stopped before the jump of its SFT, so that the teacher has something to teach): the
   STUDENT's start, evaluated ("before");
2. the TEACHER: that warm start trained ``opd.teacher_steps`` more SFT steps (learning rate decaying linearly to 0,
   for a settled model) on the CLEAN train labels (the synthetic benchmark keeps them in ``meta["clean_windows"]``;
   each boundary moved by less than half a frame interval, see :func:`clean_labels`), evaluated ("teacher"); it
   shares the student's tokenizer by construction;
3. the teacher answers each of the first ``opd.pool`` train queries ``opd.teacher_n`` times (sampled, temperature 1),
   once; its IoUs are measured against the noisy train labels, the only ones a user would have;
4. from the same warm start, for ``opd.seconds`` of wall time each:

   - ``grpo``: the recipe's GRPO (``recipes/tiny_cpu.yaml``: 4 prompts x G 8, tiou + format) on the whole train split;
   - ``opd``: ``opd.rounds`` TVDF rounds; each round the student answers the pool ``opd.student_n`` times, the
     selector ``opd.selector`` (:data:`timegrpo.curriculum.tvdf.TVDF_SELECTORS`: teacher mean IoU >= 0.5, then by
     ``delta = IoU_teacher - IoU_student``) picks ``opd.k`` samples, and OPD (``method: opd``: one completion per
     prompt, ``opd.prompts`` prompts a step, the teacher's per-token log-probs as the reward) trains on them for an
     equal share of the time left;
   - ``opd_random``: the same rounds with ``opd.k`` samples drawn uniformly from the pool (no scoring);

   each evaluated on the held-out split (greedy);
5. ``OUT/report.json``: ``before``, ``teacher``, ``grpo``, ``opd``, ``opd_random``, each with held-out ``mIoU``,
   ``R1@0.3``, ``R1@0.5``, ``R1@0.7`` and ``seconds``; the gains over ``before``, steps, timings; a plot in
   ``OUT/plots/opd.png``.

Departures from the paper (ours): the teacher is the student's own warm start trained further on clean labels (the
paper's is a larger, GRPO-trained model); a round trains for a share of the wall time instead of one epoch over
``k``; OPD's ``seconds`` include the student's re-scoring each round, while the teacher's training and its one-off
pass are reported apart (``timings_s``), as a teacher exists before distillation starts; GRPO and OPD keep their own
learning rates (the recipe's 3e-4 and ``opd.learning_rate``). A few hundred steps on 56x56 videos: the held-out
split of ``test_size`` videos has a standard error of ~2-3 mIoU, so check a second ``--seed`` before quoting a gap.

Three default runs on 2 idle cores (2026-11-26, 12.7 min each; held-out mIoU gains over the start, seeds 0, 1, 2):
OPD + TVDF +5.7, +4.0, +1.9; OPD + random +6.3, +2.4, -1.8; GRPO +10.6, +3.9, +9.2; the teacher +14.4, +15.0, +11.3
(starts 49.6, 38.2, 55.9). The README says what that shows.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from timegrpo.demo import DemoConfig, _evaluator, _every, _sft, _synthesise, _table, register_demo

KEYS = ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7")
#: Seconds the teacher's clean boundaries may move (half the 0.5 s between frames of the 2-fps synthetic videos).
SUBFRAME = 0.25
#: Prompts per ``generate`` call while scoring the pool (each with ``n`` answers).
SCORE_BATCH = 16


def _say(msg: str) -> None:
    sys.stdout.write(f"[demo opd] {msg}\n")
    sys.stdout.flush()


def clean_labels(samples: Sequence[Any], seed: int, offset: float = SUBFRAME) -> list[Any]:
    """The samples with their clean windows (``meta["clean_windows"]``, which the synthetic benchmark keeps), each
    boundary moved by ``U(-offset, offset)`` (seeded per sample), kept inside ``[0, duration]`` and in order.

    Why the offset: clean windows fall on the frame grid (multiples of 0.5 s at 2 fps), so a teacher trained on them
    writes only ``.00`` and ``.50``, while the student (trained on jittered labels) spreads its decimals; the
    teacher's per-token reward would then be spent on the decimal token. ``SUBFRAME`` (0.25 s) is half the time
    between frames: no video can tell these windows from the clean ones.

    >>> from timegrpo.data.schema import Sample
    >>> s = Sample("q", "v", None, 9.0, "x", [(1.2, 2.9)], meta={"clean_windows": [[1.0, 3.0]]})
    >>> clean_labels([s], seed=0, offset=0.0)[0].windows
    [(1.0, 3.0)]
    >>> [abs(a - b) <= 0.25 for a, b in zip(clean_labels([s], seed=0)[0].windows[0], (1.0, 3.0))]
    [True, True]
    """
    import random

    out = []
    for s in samples:
        rng = random.Random(f"{seed}:{s.qid}")
        windows = []
        for a, b in s.meta["clean_windows"]:
            lo = min(max(float(a) + rng.uniform(-offset, offset), 0.0), s.duration)
            hi = min(max(float(b) + rng.uniform(-offset, offset), 0.0), s.duration)
            windows.append((round(lo, 2), round(hi, 2)) if hi > lo else (float(a), float(b)))
        out.append(replace(s, windows=windows))
    return out


def score_ious(model: Any, processor: Any, samples: Sequence[Any], videos: Any, n: int, *, template: str,
               max_new_tokens: int, seed: int) -> list[list[float]]:
    """``n`` sampled answers (temperature 1) per sample and their IoUs against the sample's windows: the scorer of
    ``timegrpo curriculum score`` (:func:`timegrpo.curriculum.score.iter_scores`) on a model in memory."""
    import torch

    from timegrpo.curriculum.config import CurriculumScoreConfig, ScoreSampling
    from timegrpo.curriculum.score import iter_scores

    cfg = CurriculumScoreConfig(n=n, template=template, batch_size=SCORE_BATCH,
                                sampling=ScoreSampling(max_new_tokens=max_new_tokens, seed=seed))
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    try:
        return [row["ious"] for rows in iter_scores(model, processor, samples, videos, cfg) for row in rows]
    finally:
        model.train(was_training)


def opd_recipe(cfg: Any, dc: DemoConfig, out: Path, seed: int) -> Any:
    """The OPD run's recipe: the demo recipe with ``method: opd``, one completion per prompt, ``opd.prompts``
    prompts a step, ``opd.learning_rate`` constant, no step limit (the wall time stops it), every step logged."""
    o = dc.opd
    train = replace(cfg.train, num_generations=1, per_device_train_batch_size=o.prompts, loss_type="dapo",
                    learning_rate=o.learning_rate, lr_scheduler_type="constant", beta=0.0, max_steps=10**6,
                    logging_steps=1,
                    teacher_model_name_or_path="the demo's teacher (in memory)", output_dir=str(out), seed=seed)
    return replace(cfg, method="opd", train=train)


def round_selection(dc: DemoConfig, strategy: str, r: int, student: Callable[[], list[list[float]]],
                    teacher_ious: Sequence[Sequence[float]]) -> tuple[list[int], dict[str, Any]]:
    """Pool indices of round ``r``: the selector ``strategy`` (a :data:`timegrpo.curriculum.tvdf.TVDF_SELECTORS`
    name) over the student's fresh IoUs (``student()``) and the teacher's, or (``random``) ``opd.k`` drawn uniformly
    (seed ``seed + r``); and what the round logs."""
    import numpy as np

    from timegrpo.curriculum.difficulty import mean_iou
    from timegrpo.curriculum.tvdf import TVDF_SELECTORS, reliable

    o = dc.opd
    n = len(teacher_ious)
    if strategy == "random":
        picks = sorted(int(i) for i in np.random.default_rng(dc.seed + r).choice(n, min(o.k, n), replace=False))
        return picks, {"round": r + 1, "selected": len(picks)}
    ious = student()
    picks = TVDF_SELECTORS.get(strategy)(ious, teacher_ious, o.k, dc.seed + r)
    ok = reliable(teacher_ious)
    return picks, {"round": r + 1, "selected": len(picks), "reliable": len(ok),
                   "pool_student_iou": sum(map(mean_iou, ious)) / len(ious),
                   "selected_student_iou": sum(mean_iou(ious[i]) for i in picks) / max(1, len(picks)),
                   "selected_teacher_iou": sum(mean_iou(teacher_ious[i]) for i in picks) / max(1, len(picks))}


def run_rounds(dc: DemoConfig, cfg: Any, strategy: str, student: Any, teacher: Any, processor: Any,
               pool: Sequence[Any], videos: Any, teacher_ious: Sequence[Sequence[float]], out: Path
               ) -> tuple[Any, list[dict], list[dict], float]:
    """``opd.rounds`` rounds of select -> OPD within ``opd.seconds`` (each round an equal share of the time left,
    the student's scoring included); returns the student, the step logs, the round logs and the seconds used."""
    from timegrpo.trainer.grpo import GRPOTrainer

    o, t0 = dc.opd, time.perf_counter()
    logs: list[dict] = []
    rounds: list[dict] = []
    for r in range(o.rounds):
        if time.perf_counter() - t0 >= o.seconds:
            break
        fresh = functools.partial(score_ious, student, processor, pool, videos, o.student_n,
                                  template=cfg.data.prompt_template, max_new_tokens=cfg.train.max_completion_length,
                                  seed=dc.seed + 100 + r)
        picks, info = round_selection(dc, strategy, r, fresh, teacher_ious)
        if not picks:  # no reliable sample (the teacher's mean IoU is below 0.5 on every one): nothing to learn
            rounds.append({**info, "steps": 0, "seconds": round(time.perf_counter() - t0, 1)})
            _say(f"{strategy} round {r + 1}: no sample selected (no reliable teacher answer), round skipped")
            continue
        share = (o.seconds - (time.perf_counter() - t0)) / (o.rounds - r)
        rcfg = opd_recipe(cfg, dc, out / f"round_{r + 1}", dc.seed + r)
        trainer = GRPOTrainer(rcfg, student, processor, [pool[i] for i in picks], videos, teacher=teacher)
        step_logs = trainer.train(max_seconds=max(share, 0.0), progress=False,
                                  on_step=_every(25, f"{strategy} round {r + 1}", "opd/reward_mean", "iou"))
        student = trainer.accelerator.unwrap_model(trainer.model)
        logs += [{**x, "round": r + 1, "t": round(time.perf_counter() - t0, 2)} for x in step_logs]
        rounds.append({**info, "steps": len(step_logs), "seconds": round(time.perf_counter() - t0, 1)})
        _say(f"{strategy} round {r + 1}: {json.dumps({k: round(v, 3) for k, v in rounds[-1].items()})}")
    return student, logs, rounds, time.perf_counter() - t0


def _grpo(dc: DemoConfig, cfg: Any, model: Any, processor: Any, train: Sequence[Any], videos: Any
          ) -> tuple[Any, list[dict], float]:
    """The recipe's GRPO from ``model`` for ``opd.seconds``; returns the trained model, step logs and seconds."""
    from timegrpo.trainer.grpo import GRPOTrainer

    t0 = time.perf_counter()
    trainer = GRPOTrainer(cfg, model, processor, train, videos)
    logs = trainer.train(max_seconds=dc.opd.seconds, progress=False, on_step=_every(50, "grpo", "reward", "iou"))
    ends = [sum(x["step_time"] for x in logs[:i + 1]) for i in range(len(logs))]
    return (trainer.accelerator.unwrap_model(trainer.model), [{**x, "t": round(e, 2)} for x, e in zip(logs, ends)],
            time.perf_counter() - t0)


@register_demo("opd", sft_steps=600, rl_steps=None)
def run_opd_demo(dc: DemoConfig) -> dict[str, Any]:
    """Run every stage (see the module docstring); returns the report also written to ``OUT/report.json``."""
    import torch

    from timegrpo.config import load_recipe
    from timegrpo.data.synthetic import QUERIES
    from timegrpo.models.loading import prepare_policy
    from timegrpo.models.tiny import build_tiny_vlm
    from timegrpo.prompts import FIXED_RATIONALE_TARGET

    torch.set_num_threads(dc.threads)
    out, o, t_start = Path(dc.out), dc.opd, time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        timings[name] = round(time.perf_counter() - t0, 1)
        _say(f"{name}: {timings[name]} s")
        return timings[name]

    t0 = time.perf_counter()
    train, test, videos = _synthesise(dc, out)
    lap("synthesise", t0)
    cfg = load_recipe(dc.recipe, ["--train.output_dir", str(out / "grpo"), "--train.seed", str(dc.seed),
                                  "--train.max_steps", str(10**6), "--train.logging_steps", "1"])
    model, processor = build_tiny_vlm(dc.family, seed=dc.seed,
                                      corpus=[q for qs in QUERIES.values() for q in qs] + [FIXED_RATIONALE_TARGET])
    model = prepare_policy(model)
    evaluate = _evaluator(out, processor, test, videos, cfg, lap)
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    logs = {"sft": _sft(cfg, model, processor, train, videos, out / "sft", seed=dc.seed, steps=dc.sft_steps).train(
        progress=False, on_step=_every(100, "sft", "loss"))}
    results["before"] = {**evaluate("before", model), "seconds": lap("student warm start (sft)", t0)}
    model.save_pretrained(out / "warm_start")
    processor.save_pretrained(out / "warm_start")

    teacher, t0 = copy.deepcopy(model), time.perf_counter()
    logs["teacher"] = _sft(cfg, teacher, processor, clean_labels(train, dc.seed), videos, out / "teacher",
                           seed=dc.seed + 1, steps=o.teacher_steps, schedule="linear").train(
        progress=False, on_step=_every(100, "teacher", "loss"))
    results["teacher"] = {**evaluate("teacher", teacher), "seconds": lap("teacher (sft on clean labels)", t0)}
    teacher.eval().requires_grad_(False)
    pool, t0 = train[:o.pool], time.perf_counter()
    teacher_ious = score_ious(teacher, processor, pool, videos, o.teacher_n, template=cfg.data.prompt_template,
                              max_new_tokens=cfg.train.max_completion_length, seed=dc.seed + 7)
    lap("teacher scores the pool", t0)

    trained, logs["grpo"], secs = _grpo(dc, cfg, copy.deepcopy(model), processor, train, videos)
    results["grpo"] = {**evaluate("grpo", trained), "seconds": round(secs, 1)}
    rounds: dict[str, list[dict]] = {}
    for name, strategy in (("opd", o.selector), ("opd_random", "random")):
        trained, logs[name], rounds[name], secs = run_rounds(dc, cfg, strategy, copy.deepcopy(model), teacher,
                                                             processor, pool, videos, teacher_ious, out / name)
        results[name] = {**evaluate(name, trained), "seconds": round(secs, 1)}
    timings["total"] = round(time.perf_counter() - t_start, 1)
    return _report(dc, out, results, logs, rounds, timings, teacher_ious)


def _report(dc: DemoConfig, out: Path, results: dict[str, dict], logs: dict[str, list], rounds: dict[str, list],
            timings: dict[str, float], teacher_ious: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Write ``OUT/report.json`` and the plot, print the table; returns the report."""
    from timegrpo.curriculum.tvdf import reliable

    before = results["before"]["mIoU"]
    report = {
        **results,
        "gain_mIoU": {k: round(results[k]["mIoU"] - before, 2) for k in ("grpo", "opd", "opd_random", "teacher")},
        "steps": {k: len(v) for k, v in logs.items()},
        "rounds": rounds,
        "teacher_pool": {"n": len(teacher_ious), "reliable": len(reliable(teacher_ious)),
                         "mean_iou": sum(sum(x) / len(x) for x in teacher_ious) / len(teacher_ious)},
        "timings_s": timings,
        "config": asdict(dc),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    _plot(out / "plots", logs, results)
    names = {"before": "before (student warm start)", "teacher": "teacher (clean labels, longer)",
             "grpo": f"GRPO ({results['grpo']['seconds']:.0f} s)",
             "opd": f"OPD + {dc.opd.selector} ({results['opd']['seconds']:.0f} s)",
             "opd_random": f"OPD + random ({results['opd_random']['seconds']:.0f} s)"}
    _say("\n" + _table({names[k]: results[k] for k in names}) + "\n")
    g = report["gain_mIoU"]
    _say(f"over the student's start: OPD {g['opd']:+.1f} mIoU, OPD random {g['opd_random']:+.1f}, GRPO "
         f"{g['grpo']:+.1f} (teacher {g['teacher']:+.1f}); report in {out / 'report.json'}")
    return report


def _plot(out: Path, logs: dict[str, list], results: dict[str, dict]) -> None:
    """Train IoU of the rollouts against wall time for the three runs, and the held-out mIoU bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for name in ("grpo", "opd", "opd_random"):
        rows = [x for x in logs[name] if "iou" in x]
        axes[0].plot([x["t"] for x in rows], [x["iou"] for x in rows], label=name, alpha=0.8)
    axes[0].set(title="rollout IoU (train)", xlabel="seconds")
    axes[0].legend()
    names = list(results)
    axes[1].bar(range(len(names)), [results[n]["mIoU"] for n in names])
    axes[1].set_xticks(range(len(names)), names, rotation=20, ha="right")
    axes[1].set(title="held-out mIoU", ylabel="mIoU")
    fig.tight_layout()
    fig.savefig(out / "opd.png", dpi=110)
    plt.close(fig)
