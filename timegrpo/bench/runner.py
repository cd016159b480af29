"""Run one workload: prepare it, measure the data pipeline, time the steps of the trainers, summarise.

With ``vs_trl`` the trainers alternate step by step inside TRL's training loop (after each TRL step, outside TRL's
timed span, a timegrpo step runs, and with ``compare_prefix_off`` a step of timegrpo with
``train.share_prompt_prefix`` off), so slow drifts in machine load hit all alike; the first ``warmup`` steps of
each are left out of every figure. With ``sequential`` (for a GPU that cannot hold two trainers) each trainer
runs all its steps alone and is freed before the next is built. Each figure is the median over the timed steps;
the ratios are timegrpo / TRL (or prefix shared / not shared) of those medians (``paired_step_time_ratio``: the
median of the per-pair ratios).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from timegrpo.bench.pipeline import measure_videos, real_videos, summarize, time_r1_sampling
from timegrpo.bench.sides import GROUPS, PHASES, Side, TimegrpoSide
from timegrpo.bench.timing import machine_info, median, peak_tflops
from timegrpo.bench.workload import BenchConfig, Workload, prepare

logger = logging.getLogger("timegrpo.bench")

#: The phases whose language-model forwards are counted (:class:`timegrpo.bench.timing.TokenProbe`).
LM_PHASES = ("generation", "logprob", "train_forward")


def model_params(model: Any) -> dict[str, int]:
    """Parameter counts: ``vision`` (tower + merger), ``merger``, ``embedding``, ``lm_head`` (0 when tied),
    ``body`` (the rest: decoder layers and norms)."""
    from timegrpo.models.loading import merger_modules, unwrap, vision_tower

    base = unwrap(model)
    seen: set[int] = set()

    def count(module: Any) -> int:
        n = 0
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    vision = count(vision_tower(base))
    embedding = count(base.get_input_embeddings())
    head = count(base.get_output_embeddings())
    body = count(base)
    merger = sum(p.numel() for m in merger_modules(base) for p in m.parameters())
    return {"vision": vision, "merger": merger, "embedding": embedding, "lm_head": head, "body": body,
            "hidden": int(base.config.get_text_config().hidden_size),
            "vocab": int(base.config.get_text_config().vocab_size)}


def model_flops(params: dict[str, int], cfg: BenchConfig, prompt_tokens: float, patches_per_prompt: float) -> float:
    """Useful model FLOPs of one step (the same for both trainers): ``2 N T`` per forward and ``6 N T`` for
    the trained forward + backward over the ``T`` prompt + completion tokens of the P*G rows (N = decoder
    parameters without embeddings), the LM head on completion tokens only, and the vision tower (frozen,
    ``2 N_v`` per patch; the merger per merged token, i.e. 4 patches) once per prompt. Attention's quadratic
    term is left out."""
    n = cfg.prompts * cfg.num_generations
    tokens = prompt_tokens + n * cfg.completion_len
    head = 2 * params["hidden"] * params["vocab"] * n * cfg.completion_len
    forwards = 2 if cfg.beta else 1  # generation (+ reference)
    decoder = 2 * params["body"] * tokens * forwards + 6 * params["body"] * tokens
    tower = 2 * (params["vision"] - params["merger"]) * patches_per_prompt + 2 * params["merger"] * patches_per_prompt / 4
    return decoder + head * (forwards + 3) + tower * cfg.prompts


def computed_flops(params: dict[str, int], cfg: BenchConfig, lm_tokens: dict[str, float],
                   patches_per_prompt: float) -> float:
    """Model FLOPs the step actually computed: ``2 N T`` over the tokens ``T`` the language model computed in
    generation and the log-prob forwards and ``6 N T`` over the train forward's (``lm_tokens``, counted), plus
    the LM head and the vision tower as in :func:`model_flops`. With the prompt prefix shared this is far below
    :func:`model_flops`, which counts the row-by-row work."""
    forward = lm_tokens.get("generation", 0.0) + lm_tokens.get("logprob", 0.0)
    decoder = 2 * params["body"] * forward + 6 * params["body"] * lm_tokens.get("train_forward", 0.0)
    n = cfg.prompts * cfg.num_generations
    head = 2 * params["hidden"] * params["vocab"] * n * cfg.completion_len * ((2 if cfg.beta else 1) + 3)
    tower = 2 * (params["vision"] - params["merger"]) * patches_per_prompt + 2 * params["merger"] * patches_per_prompt / 4
    return decoder + head + tower * cfg.prompts


TRAIN_PHASES = GROUPS["backward_optimizer"]


def _completion_tokens(side: Side, step: dict[str, Any]) -> float:
    return side.cfg.prompts * side.cfg.num_generations * step["completion_len"]


def summarize_side(side: Side, warmup: int) -> dict[str, Any]:
    """Medians over the timed steps of one trainer (see the module docstring)."""
    steps = side.steps[warmup:]
    if not steps:
        raise RuntimeError(f"{side.name}: no timed step was recorded (ran {len(side.steps)}, warm-up {warmup})")
    times = [s["step_time"] for s in steps]
    phases = {p: median([s["phases"].get(p, 0.0) for s in steps]) for p in PHASES}
    groups = {g: median([sum(s["phases"].get(p, 0.0) for p in ps) for s in steps]) for g, ps in GROUPS.items()}
    rows = [(calls["lengths"], calls["video_pad"], calls["image_pad"])
            for s in steps for calls in s["processor_calls"]]
    flat = [(n, v, i) for lengths, vid, img in rows for n, v, i in zip(lengths, vid, img, strict=True)]
    vision = {k: median([s["vision"].get(k, 0) for s in steps]) for k in ("calls", "inputs", "patches", "seconds")}
    out: dict[str, Any] = {
        "step_time": median(times), "step_times": times,
        "warmup_step_times": [s["step_time"] for s in side.steps[:warmup]],
        "phases": phases, "phase_split": groups,
        "data_wait_share": groups["data"] / median(times),
        "tokens_per_step": median([s["tokens"] for s in steps]),
        "tokens_per_second": median([s["tokens"] / s["step_time"] for s in steps]),
        "rollout_tokens_per_second": median([_completion_tokens(side, s) / s["phases"]["generation"]
                                             for s in steps if s["phases"].get("generation")]),
        "training_tokens_per_second": median([s["tokens"] / sum(s["phases"].get(p, 0.0) for p in TRAIN_PHASES)
                                              for s in steps if any(s["phases"].get(p) for p in TRAIN_PHASES)]),
        "completion_len": median([s["completion_len"] for s in steps]),
        "prompt_tokens_per_row": sum(f[0] for f in flat) / len(flat) if flat else float("nan"),
        "video_pad_per_prompt": sum(f[1] for f in flat) / len(flat) if flat else float("nan"),
        "image_pad_per_prompt": sum(f[2] for f in flat) / len(flat) if flat else float("nan"),
        "vision_tower": {"forwards_per_step": vision["calls"], "inputs_per_step": vision["inputs"],
                         "patches_per_step": vision["patches"], "seconds_per_step": vision["seconds"]},
        "per_step": [{"step_time": s["step_time"], "tokens": s["tokens"], "vision_seconds": s["vision"].get("seconds"),
                      **{p: s["phases"].get(p, 0.0) for p in PHASES}} for s in side.steps],
        "lm_tokens_per_step": {p: median([s["lm_tokens"].get(p, 0) for s in steps]) for p in LM_PHASES},
        "peak_rss_mb": max(s["peak_rss_mb"] for s in steps),
        "rss_growth_mb": max(s["rss_growth_mb"] for s in steps),
    }
    out["visual_tokens_per_prompt"] = out["video_pad_per_prompt"] + out["image_pad_per_prompt"]
    if "peak_gpu_allocated_mb" in steps[0]:
        out["peak_gpu_allocated_mb"] = max(s["peak_gpu_allocated_mb"] for s in steps)
    return out


def pipeline_figures(work: Workload, real_dir: str | None, repeats: int = 3) -> dict[str, Any]:
    """Cold vs cached frames of (up to) 4 of the workload's synthetic videos and of the real videos."""
    synth = sorted({s.video for s in work.samples})[:4]
    rows = measure_videos(synth, work.sampling, work.root / "pipeline-synth", repeats=repeats)
    out: dict[str, Any] = {"synthetic": {"rows": rows, **summarize(rows)}}
    if real_dir:
        real = measure_videos(real_videos(real_dir), time_r1_sampling(), work.root / "pipeline-real", repeats=repeats)
        out["real"] = {"folder": str(real_dir), "sampling": "Time-R1: 2 fps, max 768 frames, total_pixels 3584*28*28",
                       "rows": real, **summarize(real)}
    return out


def warm_cache(work: Workload) -> float:
    """Decode every sample's frames into the frame cache (before any timed step); returns the seconds taken."""
    videos = work.video_source()
    t0 = time.perf_counter()
    for s in work.samples:
        videos(s)
    return time.perf_counter() - t0


def run_workload(cfg: BenchConfig, *, workdir: str | None = None, real_videos_dir: str | None = None,
                 peak: float | None = None) -> dict[str, Any]:
    """Prepare, measure and summarise one workload; returns the result object ``--json`` prints."""
    with tempfile.TemporaryDirectory(prefix="timegrpo-bench-", dir=workdir) as tmp:
        t_start = time.perf_counter()
        load_start = [round(x, 2) for x in os.getloadavg()]
        work = prepare(cfg, Path(tmp))
        pipeline = pipeline_figures(work, real_videos_dir)
        warm_s = warm_cache(work)
        ours, theirs, error = _run_sides(cfg, work)
        result = _result(cfg, work, ours, theirs, error, pipeline, peak)
        result.update(cache_warm_s=warm_s, load_average_start=load_start, wall_s=time.perf_counter() - t_start)
        return result


def _run_sides(cfg: BenchConfig, work: Workload
               ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, str | None]:
    """Run the steps: timegrpo's (and, with ``compare_prefix_off``, timegrpo's with the prompt prefix not shared)
    interleaved with TRL's, or each trainer alone, then (``sequential``) one after another, each freed before the
    next is built. Returns timegrpo's summaries (the workload's setting first, each with its parameter counts),
    TRL's summary, and why TRL's is missing."""
    shares = [cfg.share_prompt_prefix] + ([False] if cfg.compare_prefix_off else [])
    if cfg.sequential:
        summaries = [_timegrpo_alone(work, share) for share in shares]
        theirs, error = _run_trl(cfg, work, between=None) if cfg.vs_trl else (None, None)
        return summaries, theirs, error
    sides = [TimegrpoSide(work, share) for share in shares]
    theirs, error = None, None
    try:
        if cfg.vs_trl:
            theirs, error = _run_trl(cfg, work, between=lambda: [side.step() for side in sides])
        while any(len(side.steps) < cfg.total_steps for side in sides):  # alone, or what a failed TRL run left
            for side in sides:
                if len(side.steps) < cfg.total_steps:
                    side.step()
        return [_finish(side) for side in sides], theirs, error
    finally:
        for side in reversed(sides):  # the last patches first, so each restores what it found
            side.close()


def _finish(side: TimegrpoSide) -> dict[str, Any]:
    """Run the steps ``side`` has left, if any, and summarise them."""
    cfg = side.cfg
    while len(side.steps) < cfg.total_steps:
        side.step()
    summary = summarize_side(side, cfg.warmup)
    timed = side.steps[cfg.warmup:]
    summary.update(name=side.name, share_prompt_prefix=side.share, parameters=model_params(side.trainer.model),
                   vision_tower_calls_per_step=median([s["vision_tower_calls"] for s in timed]),
                   prompts_per_step=median([s["prompts"] for s in timed]))
    return summary


def _timegrpo_alone(work: Workload, share: bool) -> dict[str, Any]:
    side = TimegrpoSide(work, share)
    try:
        return _finish(side)
    finally:
        side.close()
        del side
        _free_memory()


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run_trl(cfg: BenchConfig, work: Workload, between: Any) -> tuple[dict[str, Any] | None, str | None]:
    """TRL's summary, or None and the reason it could not run this workload (not importable, its constructor
    refusing the settings, or a failure during a step, e.g. out of memory)."""
    try:
        from timegrpo.bench.trl_side import TRLSide
    except ImportError as err:
        return None, f"TRL is not importable here ({err}); install trl to compare"
    try:
        trl = TRLSide(work)
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as err:
        logger.exception("TRL's GRPOTrainer could not be built")
        return None, f"TRL's GRPOTrainer could not be built for this workload: {type(err).__name__}: {err}"
    try:
        trl.run(between=between)
        return summarize_side(trl, cfg.warmup), None
    except (RuntimeError, ValueError, TypeError) as err:
        logger.exception("TRL's GRPOTrainer failed")
        return None, f"TRL's GRPOTrainer failed in step {len(trl.steps) + 1}: {type(err).__name__}: {err}"
    finally:
        trl.close()


def _result(cfg: BenchConfig, work: Workload, summaries: list[dict[str, Any]], trl: dict[str, Any] | None,
            trl_error: str | None, pipeline: dict[str, Any], peak: float | None) -> dict[str, Any]:
    import torch

    machine = machine_info()
    peak = peak or peak_tflops((machine.get("gpu") or {}).get("name"))
    summary, *others = (_with_flops(s, cfg, peak) for s in summaries)
    flops = summary["model_tflops_per_step"] * 1e12
    result: dict[str, Any] = {
        "workload": cfg.label or cfg.model_name(), "model": cfg.model_name(), "config": cfg.to_dict(),
        "model_info": {**work.model_info, "parameters": summary.pop("parameters")}, "machine": machine,
        "device": "cuda" if torch.cuda.is_available() else "cpu", "dtype": cfg.resolved_dtype(),
        **summary,
        "completions_per_step": cfg.prompts * cfg.num_generations,
        "data_pipeline": pipeline,
    }
    if others:
        off = others[0]
        off.pop("parameters")
        result["prefix_off"] = off
        result["prefix_sharing"] = _prefix_sharing(summary, off)
    if cfg.vs_trl:
        result["vs_trl"] = _vs_trl(summary, trl, trl_error, cfg, flops, peak)
    return result


def _with_flops(summary: dict[str, Any], cfg: BenchConfig, peak: float | None) -> dict[str, Any]:
    """``summary`` with its model FLOPs (the row-by-row work, :func:`model_flops`), the FLOPs it computed
    (:func:`computed_flops`), the rates and, given the device's ``peak``, the utilisations of both."""
    params = summary["parameters"]
    patches = summary["vision_tower"]["patches_per_step"] / cfg.prompts
    flops = model_flops(params, cfg, summary["prompt_tokens_per_row"] * cfg.prompts * cfg.num_generations, patches)
    computed = computed_flops(params, cfg, summary["lm_tokens_per_step"], patches)
    step = summary["step_time"]
    return {**summary, "model_tflops_per_step": flops / 1e12, "achieved_tflops": flops / 1e12 / step,
            "mfu": flops / 1e12 / step / peak if peak else None,
            "computed_tflops_per_step": computed / 1e12, "computed_mfu": computed / 1e12 / step / peak if peak else None}


def _prefix_sharing(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    """timegrpo with the prompt prefix shared against not shared: step-time ratio (medians and paired), and the
    language-model tokens and peak memory of each."""
    pairs = [a / b for a, b in zip(on["step_times"], off["step_times"], strict=False)]
    tokens = {p: (on["lm_tokens_per_step"][p], off["lm_tokens_per_step"][p]) for p in LM_PHASES}
    out = {"step_time_ratio": on["step_time"] / off["step_time"], "paired_step_time_ratio": median(pairs),
           "lm_tokens_on_off": tokens,
           "peak_rss_mb_on_off": (on["peak_rss_mb"], off["peak_rss_mb"]),
           "rss_growth_mb_on_off": (on["rss_growth_mb"], off["rss_growth_mb"])}
    if "peak_gpu_allocated_mb" in on:
        out["peak_gpu_allocated_mb_on_off"] = (on["peak_gpu_allocated_mb"], off["peak_gpu_allocated_mb"])
    return out


def _vs_trl(ours: dict[str, Any], theirs: dict[str, Any] | None, error: str | None, cfg: BenchConfig,
            flops: float, peak: float | None) -> dict[str, Any]:
    if theirs is None:
        return {"error": error}
    theirs["achieved_tflops"] = flops / 1e12 / theirs["step_time"]
    theirs["mfu"] = theirs["achieved_tflops"] / peak if peak else None
    pairs = [a / b for a, b in zip(ours["step_times"], theirs["step_times"], strict=False)]
    ratio = ours["step_time"] / theirs["step_time"]
    return {
        "step_time_ratio": ratio,
        "tokens_per_second_ratio": ours["tokens_per_second"] / theirs["tokens_per_second"],
        "paired_step_time_ratio": median(pairs),
        "timegrpo_step_time": ours["step_time"], "trl_step_time": theirs["step_time"],
        "visual_tokens_per_prompt": {"timegrpo": ours["visual_tokens_per_prompt"],
                                     "trl": theirs["visual_tokens_per_prompt"]},
        "target_step_time_ratio": cfg.target_ratio, "target_met": ratio <= cfg.target_ratio,
        "trl": theirs,
    }
