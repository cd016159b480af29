"""Training: one loop skeleton (:mod:`~timegrpo.trainer.loop`: data order, accumulation, checkpoint/resume,
logging) with two step functions on it, GRPO / Video-OPD (:mod:`~timegrpo.trainer.grpo`) and SFT
(:mod:`~timegrpo.trainer.sft`); :mod:`~timegrpo.trainer.build` makes either from a recipe."""
