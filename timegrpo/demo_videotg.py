"""``timegrpo demo --method videotg``: VideoTG-R1's data half and curriculum GRPO end to end on CPU (SPEC section 2).

1. write the synthetic benchmark with planted partial annotations: in ``videotg.partial_share`` of the videos
   the event happens twice and a TRAIN record annotates one occurrence (the truth in ``meta``:
   ``planted_partial``, ``other_window``); train boundaries jittered by ``label_jitter``; held-out labels
   complete (:mod:`timegrpo.data.synthetic`);
2. the grounding demo's tiny model and SFT warm start (:mod:`timegrpo.demo`; ``sft_steps``, 900 here against
   the grounding demo's 1000), evaluated ("before") and saved as ``OUT/warm_start``;
3. the Boundary Reflection Agent over the train pool (``timegrpo curriculum reflect``, 3 answers, 2 must agree).
   Its frozen model depends on the variant (:data:`AGENTS`): ``instruction`` (the default, the paper's
   question: other time ranges or ``none``) asks a copy of the warm start taught that question by
   ``videotg.agent_steps`` SFT steps on ``videotg.agent_videos`` synthetic videos of its own (another seed,
   half planted, annotated window black: :func:`instruction_agent`); ``grounding`` asks the warm start the
   grounding question on the blacked-out video. ``videotg.compare_variant`` (default ``grounding``) runs the
   other one as well. Precision and recall of the flags against the planted truth: ``report["bra"]``
   (``report["bra_compare"]``);
4. the Difficulty Estimation Agent: the warm start answers every train query ``videotg.dea_n`` times
   (``timegrpo curriculum score``); then ``timegrpo curriculum select --method dea_stratified --fraction
   videotg.budget``: the flagged samples dropped, 10% of the pool drawn stratified over the DEA buckets
   (``report["dea"]``, ``report["subset"]``); every stage's file is kept under ``OUT/curriculum``;
5. curriculum GRPO on the subset (``videotg.curriculum_steps``, 60: 20% of the full run's steps, hard samples
   masked, see below) and full-data GRPO on the whole train pool (``rl_steps``, 300 here), both from the warm
   start with the recipe's train section, each evaluated on the held-out split (``report["curriculum"]``,
   ``report["full"]``: mIoU, R1@{0.3,0.5,0.7}, GRPO wall seconds).

Why an instruction agent: a grounding model always answers somewhere. Asked the grounding question on a video
whose only occurrence is blacked out, the tiny warm start answered windows outside the black frames that agreed
with each other as often as on videos where the event does happen elsewhere (seed 0: precision 0.35, recall
0.61 with 2 of 3 agreeing), so the grounding variant cannot tell absence from a second occurrence here; the
agent taught to say ``none`` can (seed 0, 1000 videos, 800 steps: precision 0.89, recall 0.82).

Curriculum masking is the trainer's (the recipe's ``masking`` section: ``max_fraction``, hard samples by the
``difficulty_bucket`` that ``select`` writes into ``meta``); :func:`masking_overrides` is the one place that
turns it on, and ``report["curriculum"]["masking"]`` says how it ran. Departures from the paper: the agents
are small models made here (VideoTG-R1 asks a separate, larger frozen video LLM), the DEA is the warm start
itself, and a few hundred steps on 56x56 synthetic videos. The GRPO wall seconds are training only; the agents'
seconds are in ``timings_s``.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from timegrpo.demo import DemoConfig, _evaluator, _every, _sft, _synthesise, _table, register_demo
from timegrpo.registry import Registry

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
    """Recipe overrides that turn on curriculum masking for the curriculum run (the recipe's ``masking``
    section: ``max_fraction``, hard samples by default), and what they do, in words."""
    if max_fraction == 0:
        return [], "off (videotg.mask_max_fraction 0)"
    return ["--masking.max_fraction", str(max_fraction)], f"on: max_fraction {max_fraction}, hard samples"


def _agent_options(dc: DemoConfig, cfg: Any, out: Path) -> dict[str, Any]:
    """The options ``reflect`` and ``score`` share here: the train pool, the recipe's video sampling, prompt and
    completion length, sampled at temperature 1, 25 prompts per generate call."""
    from timegrpo.curriculum.config import ScoreSampling
    from timegrpo.evaluate.config import VideoOptions

    video = VideoOptions(**{f.name: getattr(cfg.data, f.name) for f in fields(VideoOptions)})
    return {"model": str(out / "warm_start"), "annotations": str(out / "data" / "train.jsonl"),
            "template": cfg.data.prompt_template, "batch_size": 25, "dtype": "float32", "video": video,
            "frame_cache": str(out / "frames"),
            "sampling": ScoreSampling(max_new_tokens=cfg.train.max_completion_length, seed=dc.seed)}


def reflection_target(sample: Any) -> str:
    """What the instruction agent learns to answer for a video of its own synthetic set (the annotated window
    hidden): the unannotated occurrence of a planted video, ``none`` otherwise.

    >>> from timegrpo.data.schema import Sample
    >>> meta = {"planted_partial": True, "other_window": [6.0, 8.5]}
    >>> reflection_target(Sample("1", "v", None, 10.0, "q", [(1.0, 3.0)], meta=meta))
    '<answer>6.00 to 8.50</answer>'
    >>> reflection_target(Sample("2", "v", None, 10.0, "q", [(1.0, 3.0)], meta={"planted_partial": False}))
    '<answer>none</answer>'
    """
    if not sample.meta.get("planted_partial"):
        return "<answer>none</answer>"
    s, e = sample.meta["other_window"]
    return f"<answer>{s:.2f} to {e:.2f}</answer>"


#: The instruction agent's own videos: seed ``seed + AGENT_SEED_OFFSET`` (never the pool's videos), half of
#: them planted (``none`` and ranges balanced).
AGENT_SEED_OFFSET, AGENT_PARTIAL_SHARE = 1000, 0.5

#: The frozen model the Boundary Reflection Agent asks, per variant: ``f(dc, cfg, out, warm, processor) -> folder``.
AGENTS: Registry[Callable[..., Path]] = Registry("videotg demo agent")


@AGENTS.register("grounding")
def warm_start_agent(dc: DemoConfig, cfg: Any, out: Path, warm: Any, processor: Any) -> Path:
    """The grounding variant asks the warm start itself (``OUT/warm_start``)."""
    return out / "warm_start"


@AGENTS.register("instruction")
def instruction_agent(dc: DemoConfig, cfg: Any, out: Path, warm: Any, processor: Any) -> Path:
    """A copy of the warm start taught the ``boundary_reflection`` question: ``videotg.agent_steps`` SFT steps
    on ``videotg.agent_videos`` videos of its own (:data:`AGENT_SEED_OFFSET`, :data:`AGENT_PARTIAL_SHARE`),
    each shown with its annotated window black, the target :func:`reflection_target`; saved in ``OUT/agent``."""
    from timegrpo.config import load_recipe
    from timegrpo.curriculum.reflect import hidden_source
    from timegrpo.data.source import video_source
    from timegrpo.data.synthetic import SynthConfig, generate, load_split, recommended_sampling
    from timegrpo.prompts import OWN_TARGET_KEY

    v, data = dc.videotg, out / "agent_data"
    generate(SynthConfig(n=v.agent_videos, seed=dc.seed + AGENT_SEED_OFFSET, val_size=0, test_size=0,
                         label_jitter=dc.label_jitter, partial_share=AGENT_PARTIAL_SHARE), data)
    samples = [replace(s, meta={**s.meta, OWN_TARGET_KEY: reflection_target(s)}) for s in load_split(data, "train")]
    acfg = load_recipe(dc.recipe, ["--train.seed", str(dc.seed), "--data.prompt_template", "boundary_reflection"])
    agent = copy.deepcopy(warm)
    videos = hidden_source(video_source(recommended_sampling(), cache_dir=str(out / "frames")))
    _sft(acfg, agent, processor, samples, videos, out / "agent_sft", seed=dc.seed, steps=v.agent_steps).train(
        progress=False, on_step=_every(100, "agent sft", "loss"))
    agent.save_pretrained(out / "agent")
    processor.save_pretrained(out / "agent")
    return out / "agent"


def _reflect(dc: DemoConfig, cfg: Any, out: Path, variant: str, agent: Path, name: str) -> dict[str, Any]:
    """``timegrpo curriculum reflect`` over the train pool with ``agent``; precision and recall of its flags
    against the planted truth."""
    from timegrpo.curriculum.config import ReflectConfig
    from timegrpo.curriculum.reflect import run_reflect
    from timegrpo.curriculum.reflection import VARIANTS
    from timegrpo.data.formats import load_annotations

    v, path = dc.videotg, out / "curriculum" / name
    own = VARIANTS.get(variant).template is not None  # the instruction variant asks its own question
    opts = _agent_options(dc, cfg, out) | {"model": str(agent), "out": str(path)} | ({"template": None} if own else {})
    run_reflect(ReflectConfig(**opts, variant=variant, samples=v.bra_samples, agree=v.bra_agree, overwrite=True))
    judged, _ = load_annotations(path, "moment_detr")
    flagged, truth = [s.meta["bra_flagged"] for s in judged], [bool(s.meta.get("planted_partial")) for s in judged]
    report = {**precision_recall(flagged, truth), "flagged": sum(flagged), "planted": sum(truth), "variant": variant,
              "agent": str(agent), "samples": v.bra_samples, "agree": v.bra_agree}
    _say(f"BRA ({variant}): {report['flagged']} flagged, {report['planted']} planted; precision "
         f"{report['precision']}, recall {report['recall']}")
    return report


def _agents(dc: DemoConfig, cfg: Any, out: Path, warm: Any, processor: Any,
            lap: Callable[[str, float], None]) -> dict[str, Any]:
    """The BRA agent, BRA (and the comparison variant), DEA and the stratified subset, each through its
    command's run function; returns the report parts (``subset["path"]``: the subset's annotation file)."""
    from timegrpo.curriculum.config import CurriculumScoreConfig, SelectConfig
    from timegrpo.curriculum.score import run_score
    from timegrpo.curriculum.select import run_select

    v, cur = dc.videotg, out / "curriculum"
    t0 = time.perf_counter()
    agent = AGENTS.get(v.bra_variant)(dc, cfg, out, warm, processor)
    lap("bra agent", t0)
    t0 = time.perf_counter()
    parts: dict[str, Any] = {"bra": _reflect(dc, cfg, out, v.bra_variant, agent, "bra.jsonl")}
    lap("bra", t0)
    if v.compare_variant:
        t0 = time.perf_counter()
        other = AGENTS.get(v.compare_variant)(dc, cfg, out, warm, processor)
        parts["bra_compare"] = _reflect(dc, cfg, out, v.compare_variant, other, "bra_compare.jsonl")
        lap("bra compare", t0)
    t0 = time.perf_counter()
    run_score(CurriculumScoreConfig(**_agent_options(dc, cfg, out) | {"out": str(cur / "dea_scores.jsonl")},
                                    n=v.dea_n, overwrite=True))
    lap("dea", t0)
    summary = run_select(SelectConfig(method="dea_stratified", annotations=str(cur / "bra.jsonl"),
                                      scores=str(cur / "dea_scores.jsonl"), fraction=v.budget, seed=dc.seed,
                                      out=str(cur / "subset.jsonl")))
    return {**parts, "dea": {"n": v.dea_n, **summary["pool"]},
            "subset": {**summary["selected"], "k": summary["k"], "bra_dropped": summary["bra_dropped"],
                       "path": summary["out"]}}


def _grpo(cfg: Any, warm: Any, processor: Any, samples: list[Any], videos: Any,
          evaluate: Callable[[str, Any], dict[str, float]], tag: str) -> dict[str, Any]:
    """GRPO from a copy of ``warm`` on ``samples``; the held-out metrics, steps and training wall seconds."""
    from timegrpo.trainer.build import build_frame_transform
    from timegrpo.trainer.grpo import GRPOTrainer

    t0 = time.perf_counter()
    trainer = GRPOTrainer(cfg, copy.deepcopy(warm), processor, samples, videos,
                          frame_transform=build_frame_transform(cfg, samples))  # the recipe's masking section
    logs = trainer.train(progress=False, on_step=_every(50, f"grpo {tag}", "reward", "iou"))
    wall = round(time.perf_counter() - t0, 1)
    metrics = evaluate(tag, trainer.accelerator.unwrap_model(trainer.model))
    masked = [m["masking/masked_share"] for m in logs if "masking/masked_share" in m]
    return {**{k: metrics[k] for k in KEYS}, "format_rate": metrics["format_rate"], "wall_s": wall,
            "steps": len(logs), "samples": len(samples), "train_iou_last": logs[-1].get("iou") if logs else None,
            "masked_share_mean": sum(masked) / len(masked) if masked else 0.0}


@register_demo("videotg", sft_steps=900, rl_steps=300)
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

    agents = _agents(dc, cfg, out, model, processor, lap)
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
