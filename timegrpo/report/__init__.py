"""``timegrpo report``: one HTML page over evaluation folders and training runs.

* :mod:`timegrpo.report.sources`: what the given folders hold (``timegrpo eval`` outputs, training runs with
  ``metrics.jsonl``, or folders of either), read with the annotations behind each evaluation;
* :mod:`timegrpo.report.figures`: example timelines (predicted vs true windows) and training curves, beside the
  per-benchmark plots of :mod:`timegrpo.evaluate.plots`;
* :mod:`timegrpo.report.page`: the page itself (the cross-benchmark table, a section per evaluation, a section
  per run), every image embedded as base64 PNG and also written beside the page.
"""

from timegrpo.report.page import ReportConfig, build_report

__all__ = ["ReportConfig", "build_report"]
