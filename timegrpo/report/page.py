"""The report page: one self-contained HTML file (every PNG embedded as base64; the same PNGs are also written to
``{out stem}_files/`` beside it), with three sections:

* ``#table``: the cross-benchmark table, a row per evaluated checkpoint and, per benchmark (an annotation
  file), its R1@0.3 / R1@0.5 / R1@0.7 / mIoU (percent, from each eval's ``metrics.json``); the best value of a
  column is bold when the checkpoints differ on it; ``-`` where a checkpoint was not evaluated;
* ``#benchmarks``: per evaluation, its other metrics, the plots of :mod:`timegrpo.evaluate.plots` redrawn from
  its predictions and annotations, and example timelines (:mod:`timegrpo.report.figures`);
* ``#training``: per training run, a few recipe fields, the last logged step and the training curves.
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timegrpo.config.core import check, opt
from timegrpo.report.sources import TABLE_METRICS, EvalSource, RunSource, find_sources

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1280px;
       color: #222; padding: 0 16px; }
h1 { margin-bottom: 4px; } .meta { color: #666; margin-top: 0; }
nav a { margin-right: 16px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; } figcaption { font-size: 12px; color: #666; }
img { max-width: 100%; border: 1px solid #eee; }
.plots img { width: 400px; }
article { border-top: 1px solid #ddd; padding-top: 8px; margin-top: 16px; }
.note { color: #a33; }
"""


@dataclass
class ReportConfig:
    """``timegrpo report``: one HTML page over evaluation folders and training runs."""

    out: str = opt("report.html", "The page to write; its PNGs also go to {stem}_files/ beside it.")
    title: str = opt("timegrpo report", "Title of the page.")
    examples: int = opt(6, "Example timelines per evaluation, spread over the IoU ranking (0: none).")

    def __post_init__(self) -> None:
        check(self.examples >= 0, "examples", f"must be >= 0, got {self.examples}")
        check(self.out.endswith((".html", ".htm")), "out", f"must end in .html, got {self.out!r}")


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def fmt(v: Any) -> str:
    """A metric for a table cell: numbers with 2 decimals (integers as they are), ``-`` for none.

    >>> fmt(41.2345), fmt(7), fmt(None), fmt(True)
    ('41.23', '7', '-', 'True')
    """
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "-" if v is None else esc(v)
    return str(v) if isinstance(v, int) else f"{v:.2f}"


def img(path: Path, alt: str, caption: str | None = None) -> str:
    """A ``<figure>`` with the PNG at ``path`` embedded as base64."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">{cap}</figure>'


# ----------------------------------------------------------------------------------------------- the table


def benchmark_labels(evals: Sequence[EvalSource]) -> dict[str, str]:
    """Column label of each benchmark (annotation file): its file name, with its folder when two share a name."""
    keys = list(dict.fromkeys(e.benchmark for e in evals))
    names = [Path(k).name for k in keys]
    return {k: (f"{Path(k).parent.name}/{n}" if names.count(n) > 1 else n) for k, n in zip(keys, names)}


def cross_table(evals: Sequence[EvalSource]) -> str:
    """The ``#table`` HTML table (see the module docstring)."""
    labels = benchmark_labels(evals)
    models = list(dict.fromkeys(e.model for e in evals))
    cells = {(e.model, e.benchmark): e.metrics for e in evals}
    head1 = "".join(f'<th colspan="{len(TABLE_METRICS)}">{esc(lab)}</th>' for lab in labels.values())
    head2 = "".join(f"<th>{esc(m)}</th>" for _ in labels for m in TABLE_METRICS)
    best = {}
    for b in labels:
        for m in TABLE_METRICS:
            vals = [cells[(mod, b)].get(m) for mod in models if (mod, b) in cells]
            vals = [v for v in vals if isinstance(v, (int, float))]
            best[(b, m)] = max(vals) if len(set(vals)) > 1 else None  # nothing to point out when all tie
    rows = []
    for mod in models:
        tds = []
        for b in labels:
            for m in TABLE_METRICS:
                v = cells.get((mod, b), {}).get(m)
                text = fmt(v)
                tds.append(f"<td><b>{text}</b></td>" if v is not None and v == best[(b, m)] else f"<td>{text}</td>")
        rows.append(f'<tr><td class="name">{esc(mod)}</td>{"".join(tds)}</tr>')
    return (f'<table class="cross"><thead><tr><th class="name" rowspan="2">checkpoint</th>{head1}</tr>'
            f"<tr>{head2}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


# ----------------------------------------------------------------------------------------------- sections


def _metric_list(metrics: dict[str, Any]) -> str:
    items = [f"<tr><td class='name'>{esc(k)}</td><td>{fmt(v)}</td></tr>" for k, v in sorted(metrics.items())
             if k not in TABLE_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return f"<table class='metrics'>{''.join(items)}</table>" if items else ""


def eval_section(i: int, e: EvalSource, label: str, assets: Path, n_examples: int) -> tuple[str, int]:
    """The ``<article>`` of one evaluation and how many images it holds."""
    from timegrpo.evaluate.plots import write_plots
    from timegrpo.report.figures import examples, plot_timelines

    parts = [f'<article class="eval" id="eval-{i}"><h3>{esc(label)} &middot; {esc(e.model)}</h3>',
             f"<p class='meta'>{esc(e.title)}; {len(e.records)} predictions; folder {esc(e.path)}</p>",
             "<table class='metrics'><tr>" + "".join(f"<th>{esc(m)}</th>" for m in TABLE_METRICS) + "</tr><tr>"
             + "".join(f"<td>{fmt(e.metrics.get(m))}</td>" for m in TABLE_METRICS) + "</tr></table>",
             _metric_list(e.metrics)]
    figures: list[str] = []
    if e.samples is not None:
        folder = assets / f"eval{i}"
        names = {"iou_hist": "IoU histogram", "r1_by_length": "R1 by ground-truth length",
                 "centres": "predicted vs true centres"}
        figures += [img(p, f"{label} {names.get(p.stem, p.stem)}", names.get(p.stem)) for p in
                    write_plots(e.records, e.samples, folder)]
        rows = examples(e.records, e.samples, n_examples)
        timeline = [img(plot_timelines(rows, folder / "timelines.png"), f"{label} example timelines",
                        "examples spread over the IoU ranking: true windows green, the prediction orange")] if rows else []
    else:
        parts.append(f"<p class='note'>{esc(e.note)}</p>")
        figures += [img(p, f"{label} {p.stem}", f"{p.stem} (the eval's own plot)")
                    for p in sorted((e.path / "plots").glob("*.png"))]
        timeline = []
    parts.append(f"<div class='plots'>{''.join(figures)}</div>")
    if timeline:
        parts += ["<h4>Examples</h4>", *timeline]
    parts.append("</article>")
    return "".join(parts), len(figures) + len(timeline)


def run_section(j: int, r: RunSource, assets: Path) -> tuple[str, int]:
    """The ``<article>`` of one training run and how many images it holds."""
    from timegrpo.report.figures import CURVES, plot_training_curves

    last = r.logs[-1] if r.logs else {}
    recipe = "".join(f"<tr><td class='name'>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in r.recipe.items())
    summary = ", ".join(f"{k} {fmt(last[k])}" for k, _ in CURVES if isinstance(last.get(k), (int, float)))
    parts = [f'<article class="run" id="run-{j}"><h3>{esc(r.path)}</h3>',
             f"<p class='meta'>{len(r.logs)} logged steps; last (step {fmt(last.get('step'))}): {esc(summary)}</p>",
             f"<table class='recipe'>{recipe}</table>" if recipe else ""]
    assets.mkdir(parents=True, exist_ok=True)
    path = plot_training_curves(r.logs, assets / f"run{j}_curves.png", str(r.path))
    parts.append(img(path, f"training curves of {r.path}") if path else
                 "<p class='note'>no reward, IoU, KL, zero-std share, eval or loss values logged</p>")
    parts.append("</article>")
    return "".join(parts), int(path is not None)


def render(cfg: ReportConfig, evals: Sequence[EvalSource], runs: Sequence[RunSource], assets: Path,
           sources: Sequence[str]) -> tuple[str, int]:
    """The whole page and how many images it embeds."""
    labels = benchmark_labels(evals)
    n_images = 0
    eval_parts, run_parts = [], []
    for i, e in enumerate(evals, 1):
        part, n = eval_section(i, e, labels[e.benchmark], assets, cfg.examples)
        eval_parts.append(part)
        n_images += n
    for j, r in enumerate(runs, 1):
        part, n = run_section(j, r, assets)
        run_parts.append(part)
        n_images += n
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    body = [f"<h1>{esc(cfg.title)}</h1>",
            f"<p class='meta'>{now}; {len(evals)} evaluations, {len(runs)} training runs, from "
            + ", ".join(esc(s) for s in sources) + "</p>",
            "<nav><a href='#table'>Results</a><a href='#benchmarks'>Benchmarks</a><a href='#training'>Training</a>"
            "</nav>",
            "<section id='table'><h2>Results across benchmarks</h2>"
            + (cross_table(evals) if evals else "<p>No evaluation given.</p>") + "</section>",
            "<section id='benchmarks'><h2>Per benchmark</h2>" + ("".join(eval_parts) or "<p>No evaluation given.</p>")
            + "</section>",
            "<section id='training'><h2>Training</h2>" + ("".join(run_parts) or "<p>No training run given.</p>")
            + "</section>"]
    page = (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{esc(cfg.title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return page, n_images


def build_report(cfg: ReportConfig, inputs: Sequence[str]) -> dict[str, Any]:
    """Read ``inputs`` (:func:`timegrpo.report.sources.find_sources`), write the page to ``cfg.out``; returns a
    summary (paths and counts)."""
    from timegrpo.evaluate.predictions import write_atomic

    evals, runs = find_sources(list(inputs))
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    assets = out.parent / f"{out.stem}_files"
    page, n_images = render(cfg, evals, runs, assets, inputs)
    write_atomic(out, page)
    return {"out": str(out), "assets": str(assets), "evaluations": len(evals), "runs": len(runs),
            "images": n_images, "checkpoints": len({e.model for e in evals}),
            "benchmarks": len({e.benchmark for e in evals})}
