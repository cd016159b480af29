"""TRL's own GRPOTrainer code, called for real on given tensors: the reference of tests/algos/test_trl_*.

``trl_loss`` runs ``GRPOTrainer._compute_loss`` and ``trl_advantages`` runs ``GRPOTrainer._generate_and_score_completions``
on an instance made without ``__init__``: the attributes ``__init__`` would set are set from a real ``GRPOConfig``
(same names), the model forward is replaced by the given per-token log-probs, generation by fixed token ids, and the
accelerator by a one-process stand-in. Everything between (the importance ratio, the objective, the KL, the
aggregation; the rewards, their NaN handling and the advantages) is TRL's code as installed.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict, deque
from types import SimpleNamespace
from typing import Any

import pytest
import torch

NEEDED = ("importance_sampling_level", "use_bias_correction_kl", "sapo_temperature_pos", "multi_objective_aggregation")


def _trl() -> tuple[Any, Any]:
    """TRL's ``GRPOConfig`` and ``GRPOTrainer``; the test skips when TRL is older than what these tests follow."""
    trl = pytest.importorskip("trl")
    from trl import GRPOConfig, GRPOTrainer

    missing = [f for f in NEEDED if f not in {f.name for f in dataclasses.fields(GRPOConfig)}]
    if missing:
        pytest.skip(f"TRL {trl.__version__} lacks {missing} (these tests follow TRL 1.16)")
    return GRPOConfig, GRPOTrainer


class OneProcess:
    """The accelerator calls TRL makes, for one process."""

    num_processes, process_index, is_main_process, sync_gradients = 1, 0, True, True
    device = torch.device("cpu")

    def reduce(self, x, reduction="sum"):
        return x

    def gather(self, x):
        return x

    gather_for_metrics = gather


def grpo_config(tmp_path, **kwargs: Any) -> Any:
    with warnings.catch_warnings():  # transformers' deprecation notice of a field TRL still sets
        warnings.simplefilter("ignore", FutureWarning)
        return _trl()[0](output_dir=str(tmp_path), report_to="none", use_cpu=True, **kwargs)


def _trainer(args: Any, names: tuple[str, ...]) -> Any:
    t = object.__new__(_trl()[1])
    t.args = args
    for name in names:  # GRPOTrainer.__init__ copies these from args under the same names
        setattr(t, name, getattr(args, name))
    t.model = SimpleNamespace(training=True, is_gradient_checkpointing=False)
    t.accelerator = OneProcess()
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    return t


@pytest.fixture
def trl_loss(tmp_path):
    """``trl_loss(logps, mask, advantages, old=None, ref=None, **GRPOConfig kwargs) -> (loss, grad, metrics)``."""

    def run(logps, mask, advantages, old=None, ref=None, **kwargs):
        args = grpo_config(tmp_path, **kwargs)
        t = _trainer(args, ("loss_type", "importance_sampling_level", "beta", "off_policy_mask_threshold",
                            "top_entropy_quantile", "use_vllm", "vllm_importance_sampling_correction",
                            "max_completion_length"))
        t.epsilon_low = args.epsilon
        t.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
        t._entropy_bonus_enabled = t.aux_loss_enabled = False
        t.current_gradient_accumulation_steps = args.gradient_accumulation_steps
        lp = logps.detach().clone().requires_grad_(True)
        t._get_per_token_logps_and_entropies = lambda *a, **k: (lp, torch.zeros_like(lp), None)
        n, length = logps.shape
        inputs = {"prompt_ids": torch.zeros(n, 1, dtype=torch.long), "prompt_mask": torch.ones(n, 1, dtype=torch.long),
                  "completion_ids": torch.zeros(n, length, dtype=torch.long), "completion_mask": mask.long(),
                  "advantages": advantages, "num_items_in_batch": mask.sum()}
        if old is not None:
            inputs["old_per_token_logps"] = old
        if ref is not None:
            inputs["ref_per_token_logps"] = ref
        loss = type(t)._compute_loss(t, None, inputs)
        loss.backward()
        return loss.detach(), lp.grad, {k: v[-1] for k, v in t._metrics["train"].items()}

    return run


@pytest.fixture
def trl_advantages(tmp_path):
    """``trl_advantages(reward_funcs, rows, completions, num_generations, **GRPOConfig kwargs) -> (advantages,
    metrics)``: TRL scores ``completions[i]`` (a str) of dataset row ``rows[i]`` (a dict with ``prompt``; its other
    keys become reward columns, as in TRL) with ``reward_funcs`` and returns its advantages ``(N,)``."""

    def run(reward_funcs, rows, completions, num_generations, **kwargs):
        n = len(rows)
        args = grpo_config(tmp_path, num_generations=num_generations, per_device_train_batch_size=n, **kwargs)
        t = _trainer(args, ("loss_type", "importance_sampling_level", "beta", "num_generations", "scale_rewards",
                            "multi_objective_aggregation", "mask_truncated_completions", "pad_to_multiple_of",
                            "use_vllm", "vllm_importance_sampling_correction", "num_iterations", "log_multimodal"))
        t.environment_factories = t.environments = t.tools = None
        t.state = SimpleNamespace(global_step=0)
        t.reward_funcs = list(reward_funcs)
        t.reward_func_names = [f.__name__ for f in reward_funcs]
        t.reward_processing_classes = [None] * len(reward_funcs)
        weights = args.reward_weights or [1.0] * len(reward_funcs)
        t.reward_weights = torch.tensor(weights, dtype=torch.float32)
        t._logs = {"images": deque(), "prompt": deque(), "completion": deque(), "rewards": defaultdict(list),
                   "advantages": deque(), "extra": defaultdict(list)}
        t._pending_extra_logs, t._pending_metrics = defaultdict(list), defaultdict(list)
        t._tokenizer, t.eos_token_ids = SimpleNamespace(pad_token_id=0), [1]
        texts = list(completions)
        t._generate = lambda prompts: ([[5]] * n, [[7, 1]] * n, None, texts, None, {}, None, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = type(t)._generate_and_score_completions(t, [dict(r) for r in rows])
        return out["advantages"], {k: v[-1] for k, v in t._metrics["train"].items()}

    return run
