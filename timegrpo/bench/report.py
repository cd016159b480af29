"""Turn benchmark results into a console summary and a BENCHMARKS.md report."""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from timegrpo.bench.sides import GROUPS, PHASES

GROUP_NAMES = {"data": "data (frames + processor)", "generation": "generation", "reward": "reward",
               "logprob_forwards": "log-prob forwards (reference)",
               "backward_optimizer": "train forward + backward + optimizer",
               "other": "other"}

#: The GPU measurements the issue asks for: G 8, 2 fps, 3.6K visual tokens (36 s at 2 fps, 280x280 frames).
GPU_COMMANDS = [
    "timegrpo bench --arch qwen2_5_vl_3b --frames 72 --size 280 --prompts 1 --num-generations 8 "
    "--completion-len 200 --steps 5 --warmup 2 --gradient-checkpointing --vs-trl --sequential --compare-prefix-off "
    "--json-out outputs/bench-3b.json --markdown outputs/BENCHMARKS-3b.md",
    "timegrpo bench --arch qwen2_5_vl_7b --frames 72 --size 280 --prompts 1 --num-generations 8 "
    "--completion-len 200 --steps 5 --warmup 2 --gradient-checkpointing --vs-trl --sequential --compare-prefix-off "
    "--json-out outputs/bench-7b.json --markdown outputs/BENCHMARKS-7b.md",
]


#: A section that regenerating the report keeps (figures measured elsewhere, e.g. on a GPU): everything from a line
#: ``<!-- kept: NAME -->`` to the line ``<!-- /kept: NAME -->``, markers included.
KEPT_SECTION = re.compile(r"^<!-- kept: (\S+) -->$.*?^<!-- /kept: \1 -->$", re.MULTILINE | re.DOTALL)


def kept_sections(path: str | Path) -> list[str]:
    """The kept sections of the report at ``path`` (none when there is no such file).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "B.md"
    >>> _ = p.write_text("# B\\n<!-- kept: gpu -->\\n## GPU\\nfigures\\n<!-- /kept: gpu -->\\nrest\\n")
    >>> kept_sections(p)
    ['<!-- kept: gpu -->\\n## GPU\\nfigures\\n<!-- /kept: gpu -->']
    """
    p = Path(path)
    return [m.group(0) for m in KEPT_SECTION.finditer(p.read_text(encoding="utf-8"))] if p.is_file() else []


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if x != x:  # NaN
            return "-"
        return f"{x:.{digits}f}"
    return str(x)


def print_summary(result: dict[str, Any], file: IO[str]) -> None:
    """A few lines per workload: step time, phases and, with --vs-trl, the ratio."""
    print(f"== {result['workload']} ({result['device']}, {result['dtype']}), load {result['machine']['load_average']}",
          file=file)
    split = ", ".join(f"{k} {_f(v)}" for k, v in result["phase_split"].items())
    print(f"timegrpo: step {_f(result['step_time'])} s [{split}], {_f(result['tokens_per_second'], 1)} tok/s, "
          f"vision calls/step {result['vision_tower_calls_per_step']} for {result['prompts_per_step']} prompts",
          file=file)
    off = result.get("prefix_off")
    if off:
        split = ", ".join(f"{k} {_f(v)}" for k, v in off["phase_split"].items())
        print(f"timegrpo, prefix not shared: step {_f(off['step_time'])} s [{split}]; shared/not shared "
              f"{_f(result['prefix_sharing']['step_time_ratio'])}; LM tokens/step "
              f"{_tokens(result['lm_tokens_per_step'])} vs {_tokens(off['lm_tokens_per_step'])}", file=file)
    vs = result.get("vs_trl")
    if vs and "error" not in vs:
        t = vs["trl"]
        split = ", ".join(f"{k} {_f(v)}" for k, v in t["phase_split"].items())
        print(f"TRL:      step {_f(t['step_time'])} s [{split}], {_f(t['tokens_per_second'], 1)} tok/s", file=file)
        print(f"ratio timegrpo/TRL: step {_f(vs['step_time_ratio'])} (paired {_f(vs['paired_step_time_ratio'])}), "
              f"tokens/s {_f(vs['tokens_per_second_ratio'])}; visual tokens/prompt {vs['visual_tokens_per_prompt']}",
              file=file)
    elif vs:
        print(f"TRL: not run: {vs['error']}", file=file)


def _tokens(per_phase: dict[str, float]) -> str:
    return ", ".join(f"{p} {v:.0f}" for p, v in per_phase.items())


def _command(argv: Sequence[str]) -> str:
    args = list(argv)
    if "bench" in args:
        args = args[args.index("bench") + 1:]
    return "timegrpo bench " + " ".join(shlex.quote(a) for a in args)


def _machine(results: Sequence[dict[str, Any]]) -> list[str]:
    m = results[-1]["machine"]
    gpu = m["gpu"]["name"] if m.get("gpu") else "none"
    loads = "; ".join(f"{r['workload']}: {r.get('load_average_start')} -> {r['machine']['load_average']}"
                      for r in results)
    return [
        "## Machine", "",
        "| CPU | cores | torch threads | GPU | Python | torch | transformers | TRL |",
        "|---|---|---|---|---|---|---|---|",
        f"| {m['cpu']} | {m['cpu_cores']} | {m['torch_threads']} | {gpu} | {m['python']} | {m['torch']} | "
        f"{m['transformers']} | {m['trl']} |", "",
        f"Load average (1, 5, 15 min) at the start -> end of each workload: {loads}. A load above the core count means "
        "other processes shared the CPU while this ran: compare ratios (both trainers ran alternately under the same "
        "load) rather than absolute times. Torch ran with the thread count above (`--threads`, 1 by default: "
        "with several threads per process on a shared machine the cores are oversubscribed and step times swing "
        "several-fold; these models are too small to gain much from more threads).", "",
    ]


def _summary_table(results: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["## Summary", "",
             "| workload | model | visual tokens / prompt (timegrpo, TRL) | prompts x G | completion tokens | "
             "timegrpo step (s) | TRL step (s) | step ratio | paired ratio | tokens/s ratio | target |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        vs = r.get("vs_trl") or {}
        c = r["config"]
        ok = vs.get("target_met")
        vt = vs.get("visual_tokens_per_prompt", {})
        lines.append(
            f"| {r['workload']} | {r['model']} | {_f(vt.get('timegrpo', r['visual_tokens_per_prompt']), 0)}, "
            f"{_f(vt.get('trl'), 0)} | {c['prompts']} x {c['num_generations']} | {_f(r['completion_len'], 0)} | "
            f"{_f(r['step_time'])} | {_f(vs.get('trl_step_time'))} | {_f(vs.get('step_time_ratio'))} | "
            f"{_f(vs.get('paired_step_time_ratio'))} | {_f(vs.get('tokens_per_second_ratio'))} | "
            f"{'-' if ok is None else ('<= ' + _f(vs['target_step_time_ratio'], 2) + (': met' if ok else ': NOT met'))} |")
    compared = [r for r in results if (r.get("vs_trl") or {}).get("trl")]
    met = [r["workload"] for r in compared if r["vs_trl"]["target_met"]]
    if compared:
        lines += ["", f"The target (a timegrpo step at most the given share of TRL's on the same work) is met on "
                      f"{len(met)} of {len(compared)} workloads in this run" + (f" ({', '.join(met)})" if met else "") + ". "
                      "The step ratio is the ratio of the two medians; the paired ratio, the median of the "
                      "step-by-step ratios (each timegrpo step ran right after a TRL step)."]
    return lines + [""] + _prefix_summary(results)


def _prefix_summary(results: Sequence[dict[str, Any]]) -> list[str]:
    """The shared-prefix table: timegrpo with ``train.share_prompt_prefix`` on and off, side by side."""
    both = [r for r in results if r.get("prefix_off")]
    if not both:
        return []
    lines = ["### timegrpo with the prompt prefix shared (`train.share_prompt_prefix`, the default) and not", "",
             "| workload | step on (s) | step off (s) | on / off | paired | LM tokens / step on | off | "
             "peak memory on | off |", "|---|---|---|---|---|---|---|---|---|"]
    for r in both:
        off, ps = r["prefix_off"], r["prefix_sharing"]
        lines.append(f"| {r['workload']} | {_f(r['step_time'])} | {_f(off['step_time'])} | "
                     f"{_f(ps['step_time_ratio'])} | {_f(ps['paired_step_time_ratio'])} | "
                     f"{_f(sum(r['lm_tokens_per_step'].values()), 0)} | {_f(sum(off['lm_tokens_per_step'].values()), 0)} | "
                     f"{_memory(r)} | {_memory(off)} |")
    lines += ["", "LM tokens: tokens the language model computed in the step (generation's prefill and decoding, "
              "the log-prob forwards, the train forward; counted at the decoder's input). Peak memory: the GPU's "
              "peak allocated memory where there is one (a sequential run: each trainer alone on the GPU), else the "
              "growth of the resident set within a step, a rough figure: the CPU allocator keeps what earlier steps "
              "freed, so the resident set grows only when a step needs more than the process already holds. "
              "Both ran in the same process, step for step, unless the run was sequential.", ""]
    return lines


def _memory(s: dict[str, Any]) -> str:
    if "peak_gpu_allocated_mb" in s:
        return f"{_f(s['peak_gpu_allocated_mb'], 0)} MB GPU"
    return f"{s['rss_growth_mb']:+.0f} MB RSS"


def _phase_table(r: dict[str, Any]) -> list[str]:
    t = (r.get("vs_trl") or {}).get("trl")
    head = "| phase | timegrpo (s) | share |" + (" TRL (s) | share | TRL - timegrpo (s) |" if t else "")
    lines = [head, "|---|---|---|" + ("---|---|---|" if t else "")]
    for group, phases in GROUPS.items():
        for p in phases:
            row = f"| {GROUP_NAMES[group] if len(phases) == 1 else f'{GROUP_NAMES[group]}: {p}'} | " \
                  f"{_f(r['phases'][p])} | {_f(100 * r['phases'][p] / r['step_time'], 0)}% |"
            if t:
                row += f" {_f(t['phases'][p])} | {_f(100 * t['phases'][p] / t['step_time'], 0)}% | " \
                       f"{_f(t['phases'][p] - r['phases'][p])} |"
            lines.append(row)
    total = f"| **step (median)** | **{_f(r['step_time'])}** | 100% |"
    if t:
        total += f" **{_f(t['step_time'])}** | 100% | {_f(t['step_time'] - r['step_time'])} |"
    return lines + [total, ""]


def _side_rows(name: str, s: dict[str, Any]) -> str:
    v = s["vision_tower"]
    gpu = f", GPU peak {_f(s['peak_gpu_allocated_mb'], 0)} MB" if "peak_gpu_allocated_mb" in s else ""
    return (f"| {name} | {_f(s['tokens_per_step'], 0)} | {_f(s['tokens_per_second'], 1)} | "
            f"{_f(s['rollout_tokens_per_second'], 1)} | {_f(s['training_tokens_per_second'], 1)} | "
            f"{_f(v['forwards_per_step'], 0)} | "
            f"{_f(v['inputs_per_step'], 0)} | {_f(v['patches_per_step'], 0)} | {_f(v['seconds_per_step'])} | "
            f"{_f(s['prompt_tokens_per_row'], 1)} | {_f(s['peak_rss_mb'], 0)} (+{_f(s['rss_growth_mb'], 0)}){gpu} | "
            f"{_f(100 * s['data_wait_share'], 1)}% |")


def _workload(r: dict[str, Any]) -> list[str]:
    c = r["config"]
    vs = r.get("vs_trl") or {}
    p = r["model_info"]["parameters"]
    lines = [
        f"## Workload `{r['workload']}`", "",
        f"Model: {r['model']}: {p['body'] / 1e6:.2f}M decoder + {p['embedding'] / 1e6:.2f}M embedding + "
        f"{p['vision'] / 1e6:.2f}M vision parameters ({r['dtype']}, {r['device']}). Video: {c['frames']} frames "
        f"of {c['size']}x{c['size']} at 2 fps ({r['visual_tokens_per_prompt']:.0f} visual tokens per prompt). "
        f"{c['prompts']} prompts x G {c['num_generations']}, {c['completion_len']} completion tokens (fixed), "
        f"beta {c['beta']}, loss {c['loss_type']}; {c['steps']} timed steps after {c['warmup']} warm-up; "
        f"the workload took {_f(r['wall_s'], 0)} s.", "",
        "### Step time by phase (median seconds per optimiser step)", "", *_phase_table(r),
        "### Throughput, vision tower and memory (medians per step)", "",
        "| trainer | tokens / step | tokens / s | rollout tokens / s | training tokens / s | tower forwards | "
        "videos or images encoded | patches encoded | tower seconds | prompt tokens / row | "
        "peak RSS MB (growth in step) | data share of step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|", _side_rows("timegrpo", r),
    ]
    if r.get("prefix_off"):
        lines.append(_side_rows("timegrpo, prefix not shared", r["prefix_off"]))
    if vs.get("trl"):
        lines.append(_side_rows("TRL", vs["trl"]))
    lines += ["", "Tokens: prompt (visual included) + completion tokens of all P x G completions, each side counting "
              "its own prompts; rollout tokens / s: completion tokens per second of generation; training tokens / "
              "s: tokens per second of train forward + backward + optimizer. Both trainers live in one process, so "
              "the peak RSS holds both models; the growth during a step is each trainer's own transient.", "",
              f"timegrpo vision-tower calls per step: {r['vision_tower_calls_per_step']:.0f} for "
              f"{r['prompts_per_step']:.0f} prompts. Step times (s): timegrpo {_list(r['step_times'])}"
              + (f"; TRL {_list(vs['trl']['step_times'])}" if vs.get("trl") else "") + ".", ""]
    if vs.get("error"):
        lines += [f"TRL was not run: {vs['error']}", ""]
    elif vs:
        lines += _where_time_goes(r, vs) + [""]
    return lines + _prefix_section(r)


def _prefix_section(r: dict[str, Any]) -> list[str]:
    """Step split, language-model tokens per forward and memory of timegrpo with the prompt prefix shared and not."""
    off = r.get("prefix_off")
    if not off:
        return []
    lines = ["### Prompt prefix shared vs not shared (timegrpo, medians per step)", "",
             "| phase | shared (s) | not shared (s) | shared / not | LM tokens shared | LM tokens not shared |",
             "|---|---|---|---|---|---|"]
    for p in PHASES:
        on_t, off_t = r["lm_tokens_per_step"].get(p), off["lm_tokens_per_step"].get(p)
        lines.append(f"| {p} | {_f(r['phases'][p])} | {_f(off['phases'][p])} | "
                     f"{_f(r['phases'][p] / off['phases'][p]) if off['phases'][p] else '-'} | "
                     f"{_f(on_t, 0)} | {_f(off_t, 0)} |")
    lines.append(f"| **step** | **{_f(r['step_time'])}** | **{_f(off['step_time'])}** | "
                 f"**{_f(r['prefix_sharing']['step_time_ratio'])}** | "
                 f"{_f(sum(r['lm_tokens_per_step'].values()), 0)} | {_f(sum(off['lm_tokens_per_step'].values()), 0)} |")
    mfu = ""
    if r.get("mfu") is not None:
        mfu = (f" Model FLOPs utilisation: shared {100 * r['mfu']:.1f}% of the row-by-row work's FLOPs per second "
               f"({100 * r['computed_mfu']:.1f}% counting the FLOPs computed), not shared {100 * off['mfu']:.1f}% "
               f"({100 * off['computed_mfu']:.1f}%).")
    lines += ["", f"Peak memory: shared {_memory(r)}, not shared {_memory(off)} (peak RSS {_f(r['peak_rss_mb'], 0)} "
              f"and {_f(off['peak_rss_mb'], 0)} MB).{mfu} Step times (s): not shared {_list(off['step_times'])}.", ""]
    return lines


def _list(xs: Sequence[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def _where_time_goes(r: dict[str, Any], vs: dict[str, Any]) -> list[str]:
    """Plain sentences from the numbers: the ratio against the target and the phases that differ most."""
    t = vs["trl"]
    diffs = sorted(((t["phases"][p] - r["phases"][p], p) for p in PHASES), reverse=True)
    verdict = "meets" if vs["target_met"] else "does NOT meet"
    lines = [f"**Ratio {vs['step_time_ratio']:.2f}** (timegrpo {vs['timegrpo_step_time']:.3f} s / TRL "
             f"{vs['trl_step_time']:.3f} s per step): this {verdict} the target of <= {vs['target_step_time_ratio']}. "
             "Where the two differ most (TRL minus timegrpo, s per step): "
             + ", ".join(f"{p} {d:+.3f}" for d, p in diffs[:3]) + "; least: "
             + ", ".join(f"{p} {d:+.3f}" for d, p in diffs[-2:]) + "."]
    tv, ov = t["vision_tower"], r["vision_tower"]
    lines.append(f"The vision tower encoded {ov['patches_per_step']:.0f} patches per step in timegrpo "
                 f"({ov['seconds_per_step']:.3f} s) and {tv['patches_per_step']:.0f} in TRL "
                 f"({tv['seconds_per_step']:.3f} s), "
                 f"{tv['patches_per_step'] / max(ov['patches_per_step'], 1):.0f}x as many.")
    gen = r["phases"]["generation"] / r["step_time"]
    if gen > 0.35:
        per_token = r["phases"]["generation"] / r["config"]["completion_len"]
        lines.append(f"Generation is {100 * gen:.0f}% of timegrpo's step ({1000 * per_token:.1f} ms per decoding "
                     f"step of {r['completions_per_step']} completions): HF `generate` decodes the same tokens on "
                     "both sides, so encoding the video once cannot shrink it; only a faster rollout engine "
                     "(vLLM, a static KV cache with compiled decoding) would.")
    return lines


def _pipeline(results: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["## Data pipeline: cold decode vs cached frames", "",
             "Per video: `cold` = decode + sample + resize with no cache; `cached` = median read of the same frames "
             "from timegrpo's frame cache (identical tensors, checked). The file bytes are in the OS page cache, so "
             "`cold` is decode time, not disk time.", "",
             "| set | video | frames | size | visual tokens | cold (s) | first read, decode + cache write (s) | "
             "cached (s) | speed-up | cache entry (KB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    seen = set()
    for r in results:
        for key, block in r["data_pipeline"].items():
            label = "real (Time-R1 sampling)" if key == "real" else f"synthetic ({r['workload']})"
            if label in seen:
                continue
            seen.add(label)
            for v in block["rows"]:
                lines.append(f"| {label} | {v['video']} | {v['frames']} | {v['width']}x{v['height']} | "
                             f"{v['visual_tokens']} | {_f(v['cold_s'])} | {_f(v['fill_s'])} | {_f(v['cached_s'], 4)} | "
                             f"{_f(v['speedup'], 0)}x | {_f(v['cache_entry_kb'], 0)} |")
    lines.append("")
    shares = "; ".join(f"{r['workload']}: timegrpo {100 * r['data_wait_share']:.1f}%"
                       + (f", TRL {100 * r['vs_trl']['trl']['data_wait_share']:.1f}%"
                          if (r.get("vs_trl") or {}).get("trl") else "") for r in results)
    lines += [f"Share of the step spent on data (frames from the cache + processor), median: {shares}. The frames were "
              "cached before the timed steps (as from the second epoch on); with `data.frame_cache_dir` unset every "
              "step would pay the cold decode above for each prompt.", ""]
    return lines


def _gpu(results: Sequence[dict[str, Any]], kept: bool = False) -> list[str]:
    measured = [r for r in results if r["device"] == "cuda"]
    if measured:
        return ["## GPU", "", "GPU workloads are in the tables above (device cuda).", ""]
    elsewhere = ["A GPU run made separately, with its own date, machine and command, is kept below as it was "
                 "measured (regenerating this report keeps every section between a `<!-- kept: NAME -->` and a "
                 "`<!-- /kept: NAME -->` line).", ""] if kept else []
    return ["## GPU: not measured in this run", "", *elsewhere,
            "No GPU was available to this run, so the GPU figures the issue asks for (Qwen2.5-VL-3B and 7B "
            "architecture with random weights, G 8, 2 fps, 3.6K visual tokens per prompt: step time, rollout and "
            "training tokens per second, peak allocated memory, model FLOPs utilisation) were **not taken**. On a "
            "machine with one GPU (nothing is downloaded: the architecture is built from its published shapes in "
            "`timegrpo/bench/arch.py`, with the tiny offline tokenizer), these commands take them "
            "(72 frames of 280x280 = 36 x 100 = 3600 visual tokens per prompt):", "", "```",
            *GPU_COMMANDS, "```", "",
            "timegrpo has no vLLM rollout engine (rollouts use HF generate), so the HF-generate vs vLLM "
            "ratio was not measured either.", "",
            "Memory: `--sequential` runs all timegrpo steps, frees that trainer, then runs TRL's, since two "
            "policies, two references and two optimisers do not fit on one GPU at these sizes. With a reference "
            "model (beta 0.04) the 7B needs about 17 GB per weight copy (policy, reference, gradients) plus 33 GB "
            "of AdamW state: the 141 GB H200, not the 80 GB H100 (there, add `--beta 0` and say so).", ""]


def _matching() -> list[str]:
    return ["## How the comparison is matched", "",
            "- Same process, same model folder (saved once, loaded by both), same prompts in the same order, same "
            "reward functions (`tiou`, `format`), G, completion length (min = max new tokens, so every completion "
            "has exactly that many tokens on both sides), loss type, beta, learning rate, clipping; vision tower "
            "frozen, merger and LLM trained on both; TRL's `bf16` and `gradient_checkpointing` defaults (on) "
            "set to the workload's (bf16 only on a GPU; checkpointing only with --gradient-checkpointing).",
            "- TRL has no video input: each prompt's sampled frames reach it as every other frame, as images of "
            "the same size. A video merges frame pairs into one temporal patch, an image is one temporal patch, "
            "so both feed the model the same number of visual tokens (counted: `<|video_pad|>` vs "
            "`<|image_pad|>` per prompt, in the tables above). TRL's prompt has one pair of "
            "`<|vision_start|>`/`<|vision_end|>` per image, hence its few extra prompt tokens.",
            "- The two trainers alternate step by step (a timegrpo step runs after each TRL step, outside TRL's "
            "timed span; `--sequential` runs them one after the other instead), so load changes hit both; the "
            "first steps of each are warm-up and left out.",
            "- What TRL does by design is measured as such: its sampler repeats each prompt G times, so frames "
            "are converted and processed G times per prompt (and processed twice per step), and the vision "
            "tower runs on every completion's copy of the images in generation and again in each log-prob "
            "forward (reference, train). timegrpo encodes each video once per step and reuses the features "
            "(merger replay for the trained merger).", ""]


def write_markdown(results: Sequence[dict[str, Any]], path: str | Path, *, argv: Sequence[str],
                   suite: str | None = None, description: str = "") -> Path:
    """Write the report (commands, machine, figures, GPU status, matching rules) to ``path``, keeping the kept
    sections (:data:`KEPT_SECTION`) of the file already there after the GPU status."""
    kept = kept_sections(path)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmarks", "",
             f"Generated {now} by `{_command(argv)}`; `make bench` regenerates it (CPU, a few minutes). Every "
             "figure is a median over the timed steps of real GRPO optimiser steps; the tests never check timings, "
             "only this report shows them.", "",
             *([f"Workloads: {description}.", ""] if description else []),
             *_machine(results), *_summary_table(results)]
    for r in results:
        lines += _workload(r)
    lines += _pipeline(results) + _gpu(results, bool(kept)) + [line for block in kept for line in (block, "")]
    lines += _matching()
    out = Path(path)
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return out
