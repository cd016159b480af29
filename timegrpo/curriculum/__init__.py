"""Curricula: the data halves of TimeRFT (Time-R1, SPEC section 1) and VideoTG-R1 (SPEC section 2).

Each stage is a command whose output is a saved, auditable file (``timegrpo curriculum ...``):

- :mod:`.score`: the current model answers every query ``n`` times through the training rollout code; a scores
  jsonl, one row per sample (``qid``, ``ious``).
- :mod:`.select`: selectors registered by name (:data:`.select.SELECTORS`: ``timerft``, ``timerft_refilter``,
  ``dea_stratified``) turn a pool and its scores into a selected annotation file.
- :mod:`.rounds`: data rounds (``timegrpo curriculum timerft``): score -> select -> train, per round, over a
  registered :class:`.rounds.RoundStrategy` (``timerft``), every round's files kept, resumable.
- :mod:`.difficulty`: the Difficulty Estimation Agent's buckets; :mod:`.reflection`: the Boundary Reflection
  Agent's partial-annotation rule; :mod:`.masking`: curriculum masking of frames outside the ground truth (the
  maths in :mod:`timegrpo.data.masking`, which the trainer applies when a recipe's ``masking`` section is on).
"""
