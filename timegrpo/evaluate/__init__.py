"""Evaluation: samples -> completions -> prediction records -> metrics, for ``timegrpo eval`` and ``timegrpo score``.

* :mod:`~timegrpo.evaluate.config`: the options of both commands (``EvalConfig``, ``ScoreConfig``).
* :mod:`~timegrpo.evaluate.engine`: completers, batches with bad-video handling, prediction records.
* :mod:`~timegrpo.evaluate.backends`: generation back-ends by name (``hf``, ``vllm``).
* :mod:`~timegrpo.evaluate.benchmarks`: metric sets by name (``grounding``, ``qvhighlights``, ``nextgqa``,
  ``rextime``): how a predictions line is read and what is computed; ``auto`` detection.
* :mod:`~timegrpo.evaluate.predictions`: predictions files (resumable writer, torn lines, shards, merge).
* :mod:`~timegrpo.evaluate.score`: metrics of predictions against annotations (``timegrpo score``, metrics.json).
* :mod:`~timegrpo.evaluate.run`: a whole resumable, data-parallel ``timegrpo eval`` run.
* :mod:`~timegrpo.evaluate.plots`: IoU histogram, R1 by ground-truth length, centres.

Answers are parsed by :mod:`timegrpo.parsing` and scored with :mod:`timegrpo.spans`, as the rewards are.
"""
