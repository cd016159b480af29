"""GIRL-DETR: a lightweight DETR for moment retrieval on pre-extracted clip features, with gradient-isolated RL
on its detection heads (SPEC section 4). Runs on a laptop CPU.

Modules (import the one you need; this package imports nothing heavy):

* :mod:`~timegrpo.detr.config`   the dataclass tree of a recipe (``recipes/detr/*.yaml``), read by :mod:`timegrpo.config.core`
* :mod:`~timegrpo.detr.features` lighthouse / Moment-DETR feature files -> checked, padded batches
* :mod:`~timegrpo.detr.synth`    the synthetic clip-feature benchmark (planted, query-dependent events)
* :mod:`~timegrpo.detr.model`    the model and its ``predict`` API (ranked windows in seconds)
* :mod:`~timegrpo.detr.matcher`, :mod:`~timegrpo.detr.losses`  Hungarian matching and the supervised losses
* :mod:`~timegrpo.detr.train`    supervised training with EMA, checkpoints, resume; prediction files
* :mod:`~timegrpo.detr.rl`       the three-stage RL losses (pure functions), the convergence check, the isolated RL stage
* :mod:`~timegrpo.detr.compare`  RL beside its continued-supervised control: paired RL - control and its standard error
* :mod:`~timegrpo.detr.demo`     per seed: synthesise -> supervised (to its plateau) -> RL and control -> report.json

The command line, ``timegrpo detr train | rl | predict | demo | synth-features``, is :mod:`timegrpo.cli.detr`.
"""
