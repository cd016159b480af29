"""Publishing a checkpoint to the Hugging Face Hub: ``timegrpo push`` and ``push_to_hub: true``.

Three stages, each importing only the earlier ones: :mod:`timegrpo.hub.run` finds the training run behind a
checkpoint and its evaluations; :mod:`timegrpo.hub.card` writes the model card (front matter with the
``model-index``, body, tables, usage snippet); :mod:`timegrpo.hub.publish` assembles the upload folder, checks it
(no training state, the card parses back, the model loads back) and uploads it (:func:`push_checkpoint`).
"""

from timegrpo.hub.card import build_card, card_body, card_metadata, eval_table, usage_snippet
from timegrpo.hub.publish import PushResult, assemble_folder, push_checkpoint, upload
from timegrpo.hub.run import EvalRun, PushError, RunInfo, read_eval, read_evals, read_run, resolve_base_model

__all__ = [
    "EvalRun",
    "PushError",
    "PushResult",
    "RunInfo",
    "assemble_folder",
    "build_card",
    "card_body",
    "card_metadata",
    "eval_table",
    "push_checkpoint",
    "read_eval",
    "read_evals",
    "read_run",
    "resolve_base_model",
    "upload",
    "usage_snippet",
]
