"""Our rewards inside TRL's own ``GRPOTrainer``: one training step on a tiny text Qwen2 model (``tiny_text``:
built offline, with the tiny models' tokenizer) over a dataset with ``windows`` and ``duration`` columns, rewarded
by our ``tiou`` and ``format`` and by a reward model given by path. The values TRL computes (its completions
table) equal the values timegrpo computes on the same completions with the call its trainer makes
(:func:`reward_call` + RewardSet), and so do the columns ``tiou`` reports through ``log_extra``. The completions
are fixed (TRL's ``rollout_func``) so that the rewards are not all zero, and one sample has no window, so ``tiou``
returns None there (TRL: NaN)."""

from __future__ import annotations

import math

import pytest

from timegrpo.data.schema import Sample
from timegrpo.prompts import sample_messages
from timegrpo.rewards import RewardSet, get_reward
from timegrpo.rewards.columns import reward_call

datasets = pytest.importorskip("datasets")
trl = pytest.importorskip("trl")

TEMPLATE = "think"
SAMPLES = [Sample("q0", "v0", None, 10.0, "a red square appears", [(4.0, 8.0)]),
           Sample("q1", "v1", None, 20.0, "the blue circle moves to the right", [])]  # no window: tiou is None
#: the G = 2 fixed completions of each sample's prompt
COMPLETIONS = {"q0": ["<think>it starts at 2</think><answer>2.0 to 6.0</answer>", "<answer>4 to 8</answer>"],
               "q1": ["<think>x</think> <answer>0 to 10</answer>", "no answer at all"]}


def fixed_rollouts(tok):
    """TRL's ``rollout_func``: the prompt's chat template, and the next fixed completion of its sample + EOS."""
    by_query = {s.query: s.qid for s in SAMPLES}
    seen: dict[str, int] = {}

    def rollout(prompts, trainer):
        prompt_ids, completion_ids = [], []
        for p in prompts:
            text = tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            qid = next(q for query, q in by_query.items() if query in text)
            j = seen.get(qid, 0)
            seen[qid] = j + 1
            prompt_ids.append(tok(text, add_special_tokens=False)["input_ids"])
            completion = COMPLETIONS[qid][j % 2]
            completion_ids.append(tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def run_trl_step(tiny_text, tmp_path, monkeypatch):
    """One GRPOTrainer step; returns the trainer (its ``_logs`` hold the step's completions table)."""
    from trl import GRPOConfig, GRPOTrainer

    policy, rm_dir, tok = tiny_text
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental
    rows = [{"prompt": sample_messages(s, TEMPLATE), "windows": [list(w) for w in s.windows], "duration": s.duration}
            for s in SAMPLES]
    args = GRPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=32, max_steps=1, learning_rate=1e-3, report_to="none",
                      save_strategy="no", logging_steps=1, use_cpu=True, bf16=False, disable_tqdm=True,
                      dataloader_num_workers=0, seed=0)
    trainer = GRPOTrainer(model=policy, reward_funcs=[get_reward("tiou"), get_reward("format"), str(rm_dir)],
                          args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
                          rollout_func=fixed_rollouts(tok))
    trainer.train()
    return trainer


def nan_if_none(values):
    return [float("nan") if v is None else float(v) for v in values]


def same(a, b):
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-5)
                                    for x, y in zip(a, b, strict=True))


def test_our_rewards_in_trl_grpo_trainer_equal_ours(tiny_text, tmp_path, monkeypatch):
    _, rm_dir, tok = tiny_text
    trainer = run_trl_step(tiny_text, tmp_path, monkeypatch)
    logs = trainer._logs
    completions = list(logs["completion"])
    texts = [c[0]["content"] for c in completions]  # TRL's conversational completions
    assert sorted(texts) == sorted(t for pair in COMPLETIONS.values() for t in pair)
    # the sample of each logged row, from its prompt; then timegrpo's own reward call on the same completions
    samples = [next(s for s in SAMPLES if s.query in str(p)) for p in logs["prompt"]]
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    ours = RewardSet(["tiou", "format", str(rm_dir)])(**reward_call(samples, 1, texts, ids, TEMPLATE))
    trl_values = {name: list(values) for name, values in logs["rewards"].items()}
    assert same(trl_values["tiou"], nan_if_none(ours.per_func["tiou"]))
    assert same(trl_values["format"], nan_if_none(ours.per_func["format"]))
    assert same(trl_values["tiny-rm"], ours.per_func[str(rm_dir)])  # TRL names a reward model by its last part
    # hand-worked: GT (4, 8) in 10 s; "2.0 to 6.0": IoU 2/6 * (1 - |0.4 - 0.2|) * (1 - |0.8 - 0.6|) = 0.21333
    by_text = dict(zip(texts, zip(trl_values["tiou"], trl_values["format"], strict=True), strict=True))
    assert by_text[COMPLETIONS["q0"][0]] == pytest.approx((2 / 6 * 0.8 * 0.8, 1.0))
    assert by_text[COMPLETIONS["q0"][1]] == pytest.approx((1.0, 0.0))
    assert math.isnan(by_text[COMPLETIONS["q1"][0]][0]) and by_text[COMPLETIONS["q1"][0]][1] == 1.0
    # what tiou reported through TRL's log_extra is what it reports in ours
    for column in ("pred_start", "pred_end", "iou"):
        assert list(logs["extra"][column]) == ours.extra[column], column
    assert not any(math.isnan(v) for v in trl_values["tiny-rm"])
