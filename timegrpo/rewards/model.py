"""A reward model as a reward: a sequence-classification model and its tokenizer scoring each prompt + completion.

TRL's ``GRPOTrainer`` takes a model id (or a ``PreTrainedModel`` with its tokenizer) among its ``reward_funcs``: it
loads ``AutoModelForSequenceClassification.from_pretrained(id, num_labels=1)`` and ``AutoTokenizer``, sets the pad
token to EOS when the tokenizer has none (and the model's ``pad_token_id`` to it: the score is read at the last
non-pad token), renders each ``prompt + completion`` conversation with the tokenizer's chat template (TRL's
``apply_chat_template({"messages": ...})``: no generation prompt), tokenises the batch right-padded without special
tokens, and takes ``logits[:, 0]``. :class:`RewardModel` does the same, through TRL's own ``apply_chat_template``.

Where it departs from TRL: timegrpo's prompts carry a video entry, which a text reward model cannot read (and a
text tokenizer's chat template would print as a Python list). Each message's content is therefore reduced to its
text parts, joined, before the chat template; for a text-only conversation this renders what TRL renders (a
template treats a string and a list of text parts alike). The model is kept in eval mode without gradients; the
trainer moves it to its device (:meth:`timegrpo.rewards.RewardSet.to`); under DeepSpeed every process holds a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from timegrpo.rewards.base import completion_text


def text_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Chat messages with each content reduced to its text (text parts joined; images and videos dropped).

    >>> text_messages([{"role": "user", "content": [{"type": "text", "text": "When?"}, {"type": "video", "video": "v.mp4"}]}])
    [{'role': 'user', 'content': 'When?'}]
    """
    out = []
    for m in messages:
        content = m.get("content", "")
        if not isinstance(content, str):
            content = "".join(p.get("text", "") for p in content if p.get("type", "text") == "text")
        out.append({"role": m["role"], "content": content})
    return out


def chat_text(prompt: Any, completion: Any, tokenizer: Any) -> str:
    """The text a reward model scores: the chat template over ``prompt + completion`` (TRL's
    ``apply_chat_template``) for a conversation, ``prompt + completion`` for plain strings."""
    if isinstance(prompt, str):
        return prompt + completion_text(completion)
    from trl.data_utils import apply_chat_template

    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    return apply_chat_template({"messages": text_messages([*prompt, *completion])}, tokenizer)["text"]


class RewardModel:
    """``RewardModel(model, tokenizer)(prompts, completions, **columns) -> list[float]``: ``logits[:, 0]`` of a
    sequence-classification ``model`` on each chat text (see the module docstring). Build one from a folder or a
    Hub id with :meth:`from_pretrained`; ``__name__`` is the id's last part, as TRL logs it."""

    def __init__(self, model: Any, tokenizer: Any, name: str | None = None) -> None:
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        self.__name__ = name or str(getattr(model.config, "_name_or_path", "") or "reward_model").rstrip("/").split("/")[-1]

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> RewardModel:
        """Load ``AutoModelForSequenceClassification`` (``num_labels=1``, ``kwargs`` passed on) and its tokenizer.
        A failure is a ``KeyError`` naming the reward, as for any reward that cannot be resolved."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            model = AutoModelForSequenceClassification.from_pretrained(name_or_path, num_labels=1, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as exc:
            where = "local folder" if Path(name_or_path).is_dir() else "Hub id (not a local folder)"
            raise KeyError(f"reward {name_or_path!r}: read as a reward model's {where}, but it does not load as a "
                           f"sequence-classification model with a tokenizer: {exc}") from exc
        return cls(model, tokenizer, name=Path(name_or_path).name)

    def to(self, device: Any) -> RewardModel:
        """Move the model to ``device``."""
        self.model.to(device)
        return self

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        import torch

        texts = [chat_text(p, c, self.tokenizer) for p, c in zip(prompts, completions, strict=True)]
        inputs = self.tokenizer(text=texts, return_tensors="pt", padding=True, padding_side="right",
                                add_special_tokens=False)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            logits = self.model(**{k: v.to(device) for k, v in inputs.items()}).logits
        return logits[:, 0].float().cpu().tolist()
