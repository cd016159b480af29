"""Loss aggregation: per-token losses ``(N, T)`` + completion mask ``(N, T)`` -> one scalar, by TRL ``loss_type``.

``N = B*G`` completions of one micro-batch, ``T`` completion positions, ``mask`` 1 on completion tokens (up to and
including EOS) and 0 on padding (and on whole completions the trainer drops, e.g. ``mask_truncated_completions``).
Let ``S = sum(loss * mask)``, ``n_i`` the tokens of completion ``i`` and ``L = max_completion_length``.

=========  ======================================================  ==============================================
loss_type  micro-batch value                                       origin
=========  ======================================================  ==============================================
grpo       ``mean_i( sum_t loss_it m_it / max(n_i, 1) )``          GRPO paper, VideoChat-R1 (sequence-mean of
                                                                   token-means: long completions weigh less/token)
bnpo       ``S / max(sum(m), 1)``                                  Time-R1 (token-mean over the micro-batch)
dr_grpo    ``S / (N * L)``                                         Dr.GRPO (constant normaliser)
dapo       ``S / tokens_per_micro_batch``                          DAPO (token-mean over the global batch)
=========  ======================================================  ==============================================

The names and normalisers are TRL 1.16's (``GRPOTrainer._compute_loss``).

**Gradient accumulation and data parallelism (how the trainer must scale).** Every aggregator returns the value
of *one micro-batch on one process* in the form that Accelerate expects: the optimiser-step loss is the **mean**
of these values over the ``grad_accum_steps`` micro-batches and the ``num_processes`` ranks. So the trainer
calls ``accelerator.backward(loss)`` with ``Accelerator(gradient_accumulation_steps=grad_accum_steps)``:
Accelerate (or DeepSpeed's engine) divides by ``grad_accum_steps`` and DDP/ZeRO average over ranks. Do not
divide again. Then:

* ``grpo`` is exact when every micro-batch has the same number of completions (always true here: each holds
  ``per_device_train_batch_size * num_generations`` completions).
* ``dr_grpo``: same, exact.
* ``dapo`` is exact for any token counts if the trainer passes
  ``tokens_per_micro_batch = dapo_tokens_per_micro_batch(step_tokens, num_processes, grad_accum_steps)``, with
  ``step_tokens`` the completion tokens (``mask.sum()``) of the whole optimiser step summed over all its
  micro-batches and all ranks (an all-reduce of one number per step, after the rollouts). Without it
  (``None``) the micro-batch's own token count is used, which equals the global token-mean only for one
  micro-batch on one process.
* ``bnpo`` is the micro-batch token-mean *by definition* (TRL: "normalization is performed over the local
  batch only"): under accumulation the step loss is the plain mean of micro-batch token-means, which equals
  the token-mean of the whole step only when every micro-batch has the same number of tokens. The exact
  token-weighted combination is ``dapo``. With one micro-batch of one prompt this is Time-R1's loss.

>>> import torch
>>> loss = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
>>> mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
>>> aggregate_grpo(loss, mask), aggregate_bnpo(loss, mask)  # (1 + 3) / 2 and (4 + 3) / 5
(tensor(2.), tensor(1.4000))
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from timegrpo.registry import Registry


class AggregateFn(Protocol):
    def __call__(
        self,
        per_token_loss: Tensor,
        mask: Tensor,
        *,
        max_completion_length: int | None = None,
        tokens_per_micro_batch: float | None = None,
    ) -> Tensor: ...


#: Aggregations by TRL ``loss_type`` name.
AGGREGATIONS: Registry[AggregateFn] = Registry("loss_type")


def _check(per_token_loss: Tensor, mask: Tensor) -> Tensor:
    if per_token_loss.dim() != 2 or per_token_loss.shape != mask.shape:
        raise ValueError(
            f"per-token loss and mask must both be (N, T); got {tuple(per_token_loss.shape)} "
            f"and {tuple(mask.shape)}"
        )
    return mask.to(per_token_loss.dtype)


@AGGREGATIONS.register("grpo")
def aggregate_grpo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    tokens_per_micro_batch: float | None = None,
) -> Tensor:
    """Sequence-mean of token-means. A completion with no unmasked token counts as 0 in the mean (as TRL)."""
    m = _check(per_token_loss, mask)
    per_seq = (per_token_loss * m).sum(-1) / m.sum(-1).clamp(min=1.0)
    return per_seq.mean()


@AGGREGATIONS.register("bnpo")
def aggregate_bnpo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    tokens_per_micro_batch: float | None = None,
) -> Tensor:
    """Token-mean over the micro-batch (Time-R1)."""
    m = _check(per_token_loss, mask)
    return (per_token_loss * m).sum() / m.sum().clamp(min=1.0)


@AGGREGATIONS.register("dr_grpo")
def aggregate_dr_grpo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    tokens_per_micro_batch: float | None = None,
) -> Tensor:
    """``sum(loss * mask) / (N * max_completion_length)`` (Dr.GRPO's constant normaliser)."""
    m = _check(per_token_loss, mask)
    if max_completion_length is None or max_completion_length < 1:
        raise ValueError(f"loss_type 'dr_grpo' needs max_completion_length >= 1, got {max_completion_length}")
    return (per_token_loss * m).sum() / (per_token_loss.size(0) * max_completion_length)


@AGGREGATIONS.register("dapo")
def aggregate_dapo(
    per_token_loss: Tensor,
    mask: Tensor,
    *,
    max_completion_length: int | None = None,
    tokens_per_micro_batch: float | None = None,
) -> Tensor:
    """``sum(loss * mask) / tokens_per_micro_batch``: the global token-mean once averaged as the module says.

    ``tokens_per_micro_batch=None`` uses this micro-batch's own token count.
    """
    m = _check(per_token_loss, mask)
    if tokens_per_micro_batch is None:
        return (per_token_loss * m).sum() / m.sum().clamp(min=1.0)
    if tokens_per_micro_batch <= 0:
        raise ValueError(f"tokens_per_micro_batch must be > 0, got {tokens_per_micro_batch}")
    return (per_token_loss * m).sum() / tokens_per_micro_batch


def dapo_tokens_per_micro_batch(step_tokens: float, num_processes: int, grad_accum_steps: int) -> float:
    """The ``dapo`` normaliser: completion tokens of the whole optimiser step (all micro-batches, all ranks)
    divided by ``num_processes * grad_accum_steps``; at least 1 so an all-masked step gives a zero loss.

    >>> dapo_tokens_per_micro_batch(120, num_processes=2, grad_accum_steps=3)
    20.0
    """
    if num_processes < 1 or grad_accum_steps < 1:
        raise ValueError(f"num_processes and grad_accum_steps must be >= 1, got {num_processes}, {grad_accum_steps}")
    return max(float(step_tokens), 1.0) / (num_processes * grad_accum_steps)
