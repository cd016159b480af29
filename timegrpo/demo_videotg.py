"""``timegrpo demo --method videotg``: VideoTG-R1's data half and curriculum GRPO end to end on CPU (SPEC section 2).

1. write the synthetic benchmark with planted partial annotations: in ``videotg.partial_share`` of the videos
   the event happens twice and a TRAIN record annotates one occurrence (the truth in ``meta``:
   ``planted_partial``, ``other_window``); train boundaries jittered by ``label_jitter``; held-out labels
   complete (:mod:`timegrpo.data.synthetic`);
2. the grounding demo's tiny model and SFT warm start (:mod:`timegrpo.demo`: ``sft_steps`` steps), evaluated
   ("before") and saved as ``OUT/warm_start``;
3. the Boundary Reflection Agent over the train pool with the warm start frozen (``timegrpo curriculum reflect``,
   ``videotg.bra_variant``: the tiny model follows no instruction, so ``grounding`` by default), and its
   precision and recall against the planted truth (``report["bra"]``);
4. the Difficulty Estimation Agent: the warm start answers every train query ``videotg.dea_n`` times
   (``timegrpo curriculum score``); then ``timegrpo curriculum select --method dea_stratified --fraction
   videotg.budget``: the flagged samples dropped, the budget drawn stratified over the DEA buckets
   (``report["dea"]``, ``report["subset"]``); every stage's file is kept under ``OUT/curriculum``;
5. curriculum GRPO on the subset (``videotg.curriculum_steps`` steps, hard samples masked, see below) and
   full-data GRPO on the whole train pool (``rl_steps`` steps), both from the warm start with the recipe's train
   section, each evaluated on the held-out split (``report["curriculum"]``, ``report["full"]``: mIoU, R1@0.5,
   R1@0.7, GRPO wall seconds).

Curriculum masking is the trainer's (the recipe's ``masking`` section: ``max_fraction``, hard samples by the
``difficulty_bucket`` that ``select`` writes into ``meta``); :func:`masking_overrides` is the one place that
turns it on, and ``report["curriculum"]["masking"]`` says whether it ran. Departures from the paper: the agents
are the policy's own warm start (VideoTG-R1 uses a separate, larger frozen video LLM for BRA), the grounding
variant of BRA, and a few hundred steps on 56x56 synthetic videos. The GRPO wall seconds are training only; the
agents' seconds are in ``timings_s``.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from timegrpo.demo import DEMOS, DemoConfig, _evaluator, _every, _sft, _synthesise, _table

KEYS = ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7")


def _say(msg: str) -> None:
    sys.stdout.write(f"[demo videotg] {msg}\n")
    sys.stdout.flush()


def precision_recall(flagged: Sequence[bool], truth: Sequence[bool]) -> dict[str, float | int | None]:
    """Precision and recall of ``flagged`` against ``truth`` (None when undefined: nothing flagged / planted).

    >>> precision_recall([True, True, False, False, True], [True, False, False, True, True])
    {'precision': 0.6666666666666666, 'recall': 0.6666666666666666, 'tp': 2, 'fp': 1, 'fn': 1, 'n': 5}
    """
    tp = sum(f and t for f, t in zip(flagged, truth, strict=True))
    fp = sum(f and not t for f, t in zip(flagged, truth, strict=True))
    fn = sum(t and not f for f, t in zip(flagged, truth, strict=True))
    return {"precision": tp / (tp + fp) if tp + fp else None, "recall": tp / (tp + fn) if tp + fn else None,
            "tp": tp, "fp": fp, "fn": fn, "n": len(truth)}


def masking_overrides(max_fraction: float) -> tuple[list[str], str]:
    """Recipe overrides that turn on curriculum masking for the curriculum run, and what happened, in words.

    The trainer's masking is the recipe's ``masking`` section (``max_fraction``, ``until``, ``order``,
    ``buckets``); while a checkout's recipe has no such section the run goes without masking and says so.
    """
    from timegrpo.config.core import sections_of
    from timegrpo.config.recipe import RecipeConfig

    if max_fraction == 0:
        return [], "off (videotg.mask_max_fraction 0)"
    if "masking" not in sections_of(RecipeConfig):
        return [], "not applied: this checkout's recipe has no masking section (the trainer cannot mask yet)"
    return ["--masking.max_fraction", str(max_fraction)], f"on: max_fraction {max_fraction}, hard samples"


def _agent_options(dc: DemoConfig, cfg: Any, out: Path) -> dict[str, Any]:
    """The options ``reflect`` and ``score`` share here: the recipe's video sampling, prompt and completion
    length, sampled at temperature 1, 25 prompts per generate call."""
    from timegrpo.curriculum.config import ScoreSampling
    from timegrpo.evaluate.config import VideoOptions

    video = VideoOptions(**{f.name: getattr(cfg.data, f.name) for f in fields(VideoOptions)})
    return {"model": str(out / "warm_start"), "annotations": str(out / "data" / "train.jsonl"),
            "template": cfg.data.prompt_template, "batch_size": 25, "dtype": "float32", "video": video,
            "frame_cache": str(out / "frames"),
            "sampling": ScoreSampling(max_new_tokens=cfg.train.max_completion_length, seed=dc.seed)}


def _agents(dc: DemoConfig, cfg: Any, out: Path, lap: Callable[[str, float], None]) -> dict[str, Any]:
    """BRA, DEA and the stratified subset, each through its command's run function; returns the report parts
    (``subset["path"]``: the subset's annotation file)."""
    from timegrpo.curriculum.config import CurriculumScoreConfig, ReflectConfig, SelectConfig
    from timegrpo.curriculum.reflect import run_reflect
    from timegrpo.curriculum.score import run_score
    from timegrpo.curriculum.select import run_select
    from timegrpo.data.formats import load_annotations

    v, cur = dc.videotg, out / "curriculum"
    shared = _agent_options(dc, cfg, out)
    t0 = time.perf_counter()
    run_reflect(ReflectConfig(**shared | {"out": str(cur / "bra.jsonl")}, variant=v.bra_variant,
                              samples=v.bra_samples, agree=v.bra_agree, overwrite=True))
    judged, _ = load_annotations(cur / "bra.jsonl", "moment_detr")
    bra = {**precision_recall([s.meta["bra_flagged"] for s in judged],
                              [bool(s.meta.get("planted_partial")) for s in judged]),
           "flagged": sum(s.meta["bra_flagged"] for s in judged),
           "planted": sum(bool(s.meta.get("planted_partial")) for s in judged),
           "variant": v.bra_variant, "samples": v.bra_samples, "agree": v.bra_agree}
    lap("bra", t0)
    _say(f"BRA: {bra['flagged']} flagged, {bra['planted']} planted; precision {bra['precision']}, "
         f"recall {bra['recall']}")
    t0 = time.perf_counter()
    run_score(CurriculumScoreConfig(**shared | {"out": str(cur / "dea_scores.jsonl")}, n=v.dea_n, overwrite=True))
    lap("dea", t0)
    summary = run_select(SelectConfig(method="dea_stratified", annotations=str(cur / "bra.jsonl"),
                                      scores=str(cur / "dea_scores.jsonl"), fraction=v.budget, seed=dc.seed,
                                      out=str(cur / "subset.jsonl")))
    return {"bra": bra, "dea": {"n": dc.videotg.dea_n, **summary["pool"]},
            "subset": {**summary["selected"], "k": summary["k"], "bra_dropped": summary["bra_dropped"],
                       "path": summary["out"]}}


def _grpo(cfg: Any, warm: Any, processor: Any, samples: list[Any], videos: Any,
          evaluate: Callable[[str, Any], dict[str, float]], tag: str) -> dict[str, Any]:
    """GRPO from a copy of ``warm`` on ``samples``; the held-out metrics, steps and training wall seconds."""
    from timegrpo.trainer.grpo import GRPOTrainer

    t0 = time.perf_counter()
    trainer = GRPOTrainer(cfg, copy.deepcopy(warm), processor, samples, videos)
    logs = trainer.train(progress=False, on_step=_every(50, f"grpo {tag}", "reward", "iou"))
    wall = round(time.perf_counter() - t0, 1)
    metrics = evaluate(tag, trainer.accelerator.unwrap_model(trainer.model))
    return {**{k: metrics[k] for k in KEYS}, "format_rate": metrics["format_rate"], "wall_s": wall,
            "steps": len(logs), "samples": len(samples), "train_iou_last": logs[-1].get("iou") if logs else None}


@DEMOS.register("videotg")
def run_videotg(dc: DemoConfig) -> dict[str, Any]:
    """Run every stage (see the module docstring); returns the report also written to ``OUT/report.json``."""
    import torch

    from timegrpo.config import load_recipe
    from timegrpo.data.formats import load_annotations
    from timegrpo.data.synthetic import QUERIES
    from timegrpo.models.loading import prepare_policy
    from timegrpo.models.tiny import build_tiny_vlm
    from timegrpo.prompts import FIXED_RATIONALE_TARGET

    torch.set_num_threads(dc.threads)
    out, v = Path(dc.out), dc.videotg
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 1)
        _say(f"{name}: {timings[name]} s")

    t0 = time.perf_counter()
    train, test, videos = _synthesise(dc, out, partial_share=v.partial_share)
    lap("synthesise", t0)
    common = ["--train.seed", str(dc.seed)]
    cfg = load_recipe(dc.recipe, [*common, "--train.output_dir", str(out / "grpo_full"),
                                  "--train.max_steps", str(dc.rl_steps)])
    corpus = [q for qs in QUERIES.values() for q in qs] + [FIXED_RATIONALE_TARGET]
    model, processor = build_tiny_vlm(dc.family, seed=dc.seed, corpus=corpus)
    model = prepare_policy(model)
    evaluate = _evaluator(out, processor, test, videos, cfg, lap)
    t0 = time.perf_counter()
    _sft(cfg, model, processor, train, videos, out / "sft", seed=dc.seed, steps=dc.sft_steps).train(
        progress=False, on_step=_every(100, "sft", "loss"))
    lap("sft warm start", t0)
    before = evaluate("before", model)
    model.save_pretrained(out / "warm_start")
    processor.save_pretrained(out / "warm_start")

    agents = _agents(dc, cfg, out, lap)
    subset, _ = load_annotations(agents["subset"]["path"], "moment_detr")
    masking, masking_note = masking_overrides(v.mask_max_fraction)
    ccfg = load_recipe(dc.recipe, [*common, "--train.output_dir", str(out / "grpo_curriculum"),
                                   "--train.max_steps", str(v.curriculum_steps), *masking])
    curriculum = {**_grpo(ccfg, model, processor, subset, videos, evaluate, "curriculum"), "masking": masking_note}
    full = _grpo(cfg, model, processor, train, videos, evaluate, "full")
    timings |= {"grpo curriculum": curriculum["wall_s"], "grpo full": full["wall_s"]}
    timings["total"] = round(time.perf_counter() - t_start, 1)
    report = {**agents, "before": {k: before[k] for k in (*KEYS, "format_rate")}, "curriculum": curriculum,
              "full": full, "curriculum_minus_full_mIoU": round(curriculum["mIoU"] - full["mIoU"], 2),
              "timings_s": timings, "config": asdict(dc), "grpo_config": asdict(cfg.train)}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    rows = {"before (SFT warm start)": before, f"curriculum GRPO ({len(subset)} samples)": curriculum,
            f"full-data GRPO ({len(train)} samples)": full}
    _say("\n" + _table(rows))
    _say(f"BRA precision {agents['bra']['precision']}, recall {agents['bra']['recall']}; curriculum "
         f"{curriculum['wall_s']} s vs full {full['wall_s']} s of GRPO; report in {out / 'report.json'}")
    return report
