"""Example rewards following TRL's protocol ``f(completions, **columns) -> list[float | None]``."""

from __future__ import annotations

from typing import Any


def _text(completion: Any) -> str:
    return completion if isinstance(completion, str) else "".join(m["content"] for m in completion)


def brevity(completions: list[Any], max_chars: int = 100, **columns: Any) -> list[float | None]:
    """1.0 for an empty completion, falling linearly to 0.0 at ``max_chars`` characters and beyond."""
    return [max(0.0, 1.0 - len(_text(c)) / max_chars) for c in completions]


def picky(completions: list[Any], **columns: Any) -> list[float | None]:
    """1.0 per completion, but raises on one containing 'boom' (to test how failures are reported)."""
    out: list[float | None] = []
    for c in completions:
        if "boom" in _text(c):
            raise ValueError("cannot score a completion that says boom")
        out.append(1.0)
    return out
